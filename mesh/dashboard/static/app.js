// srs-mesh dashboard: polls this node's cluster API and renders it.
// Every value from the API is written with textContent, never as HTML.
"use strict";

(function () {
  const POLL_MS = 2000;
  const HISTORY_MS = 4000; // how often the charts' history is fetched
  const TIMEOUT_MS = 5000;
  const WINDOW_MS = 15 * 60 * 1000; // what the charts show
  const EVENTS_SHOWN = 50;
  const TOKEN_KEY = "srs-mesh.token";

  const $ = (id) => document.getElementById(id);

  // Errors of the page itself are counted on <body data-errors> (and logged
  // by the browser as usual), so that tests and operators can see them.
  const pageErrors = [];
  function pageError(what) {
    pageErrors.push(String(what));
    document.body.dataset.errors = String(pageErrors.length);
    document.body.dataset.lastError = String(what).slice(0, 300);
  }
  // Capturing also catches assets that fail to load (their errors do not
  // bubble).
  window.addEventListener("error", (e) => pageError(e.message || (e.target && (e.target.src || e.target.href)) || "script error"), true);
  window.addEventListener("unhandledrejection", (e) => pageError("unhandled rejection: " + (e.reason && e.reason.message ? e.reason.message : e.reason)));
  document.addEventListener("securitypolicyviolation", (e) => pageError("CSP: " + e.violatedDirective + " " + e.blockedURI));

  const last = { status: null, streams: null, events: null, history: null, historyAt: 0, ok: 0 };
  const rendered = {}; // table id -> signature of what it shows

  // ---- small DOM helpers ----
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  const td = (...c) => el("td", null, ...c);
  const numTd = (text, title) => el("td", { class: "num", text: text, title: title || null });
  const badge = (text, kind) => el("span", { class: "badge " + (kind || ""), text: text });

  // ---- human units ----
  function clock(ms) {
    if (!ms) return "never";
    return new Date(ms).toLocaleTimeString([], { hour12: false });
  }

  // duration renders a span of milliseconds as people say it: "12 s",
  // "4 min", "2 h 05 min", "3 d 4 h".
  function duration(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min";
    const h = Math.floor(m / 60);
    if (h < 48) return h + " h " + String(m % 60).padStart(2, "0") + " min";
    return Math.floor(h / 24) + " d " + (h % 24) + " h";
  }

  function ago(ms, now) {
    if (!ms) return "never";
    return duration(now - ms) + " ago";
  }

  // BIT_UNITS are the units of bit rates, each 1000 times the last.
  const BIT_UNITS = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"];

  // bitScale returns the index in BIT_UNITS of the unit that shows bps with
  // one to three digits before the point.
  function bitScale(bps) {
    let i = 0;
    while (bps >= 1000 && i < BIT_UNITS.length - 1) { bps /= 1000; i++; }
    return i;
  }

  // bits renders a bit rate: "0 bit/s", "850 kbit/s", "2.4 Mbit/s".
  function bits(bps) {
    if (!bps || bps < 0) return "0 bit/s";
    const i = bitScale(bps);
    const v = bps / Math.pow(1000, i);
    return (v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)) + " " + BIT_UNITS[i];
  }

  // tick renders an axis value with no more decimals than the step
  // between ticks needs.
  function tick(v, step) {
    const decimals = step >= 1 ? 0 : Math.min(3, Math.ceil(-Math.log10(step) - 1e-9));
    return v.toFixed(decimals);
  }

  const iso = (ms) => (ms ? new Date(ms).toISOString() : "");

  // ---- fetching ----
  async function getJSON(path) {
    const res = await fetch(path, {
      headers: { Accept: "application/json" },
      cache: "no-store",
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    if (res.status === 404) return { notFound: true };
    let body = null;
    try { body = await res.json(); } catch (e) { /* not JSON */ }
    if (!res.ok) {
      throw new Error((body && body.message) || ("HTTP " + res.status));
    }
    return { body: body };
  }

  // optional fetches a document the page can live without (older nodes
  // answer 404): it yields null rather than failing the refresh.
  async function optional(path) {
    try {
      const r = await getJSON(path);
      return r.notFound ? null : r.body;
    } catch (e) {
      return null;
    }
  }

  async function poll() {
    try {
      // The history changes once per sampling interval (5 s by default) and
      // is the largest document: it is asked for less often.
      const wantHistory = Date.now() - last.historyAt >= HISTORY_MS;
      const [st, ss, ev, hi] = await Promise.all([
        getJSON("mesh/v1/status"), optional("mesh/v1/streams"),
        optional("mesh/v1/events?limit=" + EVENTS_SHOWN), wantHistory ? optional("mesh/v1/history") : Promise.resolve(last.history),
      ]);
      if (wantHistory) last.historyAt = Date.now();
      if (st.notFound || !st.body) throw new Error("no cluster status at mesh/v1/status");
      last.status = st.body;
      last.streams = ss;
      last.events = ev;
      last.history = hi;
      last.ok = Date.now();
      showBanner(null);
      render();
    } catch (e) {
      const since = last.ok ? " Showing data from " + clock(last.ok) + "." : "";
      showBanner("Cannot reach node: " + (e && e.message ? e.message : e) + "." + since);
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  function showBanner(msg) {
    const b = $("banner");
    if (!msg) { b.hidden = true; b.textContent = ""; document.body.classList.remove("stale"); return; }
    b.textContent = msg;
    b.hidden = false;
    document.body.classList.add("stale");
  }

  // showPartial names the nodes that did not answer this node's questions:
  // their clients, throughput and events are missing from the page.
  function showPartial() {
    const missing = new Map();
    for (const doc of [last.streams, last.events, last.history]) {
      for (const n of (doc && doc.nodes) || []) {
        if (!n.ok && !missing.has(n.id)) missing.set(n.id, n.error || "no answer");
      }
    }
    const p = $("partial");
    if (missing.size === 0) { p.hidden = true; p.textContent = ""; return; }
    const parts = [...missing].map(([id, why]) => id + " (" + why + ")");
    p.textContent = "Not answering: " + parts.join("; ") + ". Their clients, throughput and events are missing below.";
    p.hidden = false;
  }

  // ---- rendering ----
  function render() {
    const st = last.status;
    $("fact-node").textContent = st.node_id || "–";
    $("fact-leader").textContent = st.leader || "none";
    $("fact-raft").textContent = st.raft_state || "–";
    $("fact-term").textContent = st.term != null ? String(st.term) : "–";
    $("fact-applied").textContent = st.applied_index != null ? st.applied_index + " / " + (st.commit_index ?? "–") : "–";
    $("fact-degraded").textContent = st.degraded_routes != null ? String(st.degraded_routes) : "–";
    $("fact-updated").textContent = clock(st.generated_unix_ms || Date.now());
    $("fact-leader").classList.toggle("warn", !st.leader);
    showPartial();
    const steps = [
      () => renderStreams(st, last.streams),
      () => renderNodes(st, last.history),
      () => renderOrigins(st),
      () => renderEvents(last.events, st),
      () => renderCharts(last.history),
    ];
    for (const step of steps) {
      try { step(); } catch (e) { pageError(e && e.stack ? e.stack : e); }
    }
  }

  // fill replaces a table body when what it shows has changed, so that
  // focus and selection survive refreshes that change nothing.
  function fill(id, signature, rows, empty, cols) {
    if (rendered[id] === signature) return;
    rendered[id] = signature;
    const body = $(id).tBodies[0];
    if (rows.length === 0) {
      rows = [el("tr", { class: "empty" }, el("td", { colspan: String(cols), text: empty }))];
    }
    body.replaceChildren(...rows);
  }

  // counts renders {"rtmp":2,"flv":1} as small "proto n" chips.
  function counts(m, order) {
    const keys = Object.keys(m || {}).filter((k) => m[k] > 0);
    if (order) keys.sort((a, b) => m[b] - m[a] || a.localeCompare(b));
    else keys.sort();
    if (keys.length === 0) return el("span", { class: "muted", text: "none" });
    const box = el("span", { class: "chips" });
    for (const k of keys) box.append(el("span", { class: "chip" }, el("span", { class: "chip-k", text: k }), " ", el("b", { text: String(m[k]) })));
    return box;
  }

  function latestSamples(hist) {
    const out = new Map();
    for (const n of (hist && hist.nodes) || []) {
      const s = n.samples || [];
      if (n.ok && s.length) out.set(n.id, s[s.length - 1]);
    }
    return out;
  }

  // sessionsCell is a node's clients by protocol and, apart and marked as
  // such, its estimate of HLS and DASH viewers (they hold no connection).
  function sessionsCell(s) {
    const box = el("span", {}, counts(s.sessions));
    const est = (s.hls_viewers_estimated || 0) + (s.dash_viewers_estimated || 0);
    if (est > 0) {
      box.append(" ", el("span", { class: "muted", text: "≈" + est + " HLS/DASH viewers (estimate)",
        title: "Distinct client addresses and User-Agents that fetched a playlist, MPD or segment in the last 30 s: an estimate, not a count" }));
    }
    return box;
  }

  function renderNodes(st, hist) {
    const members = (st.members || []).slice().sort((a, b) => String(a.id).localeCompare(String(b.id)));
    const latest = latestSamples(hist);
    const answered = new Map(((hist && hist.nodes) || []).map((n) => [n.id, n]));
    $("nodes-count").textContent = "(" + members.length + ")";
    const rows = members.map((m) => {
      const leader = m.id === st.leader || m.raft_role === "leader";
      const name = el("th", { scope: "row" }, m.id);
      if (leader) name.append(" ", badge("leader", "leader"));
      if (m.id === st.node_id) name.append(" ", badge("this node", "self"));
      const gs = m.gossip_state || "unknown";
      let role = m.raft_role || "none";
      if (m.role && m.role !== role) role += " · " + m.role;
      if (m.voter === false && m.raft_role !== "none" && !/non-?voter/.test(role)) role += " (non-voter)";
      const s = latest.get(m.id);
      const a = answered.get(m.id);
      const noData = a && !a.ok ? el("span", { class: "muted", text: "no answer", title: a.error || "" }) : el("span", { class: "muted", text: "–" });
      return el("tr", { class: leader ? "is-leader" : gs !== "alive" ? "is-bad" : null },
        name,
        td(badge(gs, gs === "alive" ? "ok" : gs === "suspect" ? "warn" : gs === "left" ? "" : "bad")),
        td(role),
        td(m.zone ? m.zone : el("span", { class: "muted", text: "–" })),
        s ? numTd(bits(s.in_bps)) : el("td", { class: "num" }, noData.cloneNode(true)),
        s ? numTd(bits(s.out_bps)) : el("td", { class: "num" }, noData.cloneNode(true)),
        td(s ? sessionsCell(s) : noData),
        s ? numTd(s.fanout_upstreams ? s.fanout_players + " on " + s.fanout_upstreams + " ↑" : "–",
          s.fanout_upstreams ? Math.round(s.fanout_players / s.fanout_upstreams) + " players per upstream" : "no shared upstream")
          : el("td", { class: "num" }, noData.cloneNode(true)),
        s ? numTd(s.cache_requests_per_s ? Math.round(100 * s.cache_hit_ratio) + " %" : "–",
          s.cache_requests_per_s ? (s.cache_requests_per_s).toFixed(1) + " requests/s" : "no HLS/DASH requests")
          : el("td", { class: "num" }, noData.cloneNode(true)),
        td(el("code", { text: m.api_addr || "" })));
    });
    const sig = JSON.stringify([members, st.leader, st.node_id, [...latest], [...answered].map(([id, a]) => [id, a.ok])]);
    fill("nodes", sig, rows, "No members known.", 10);
  }

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }

  // load renders what an origin reported of its load in its SRS
  // heartbeats (status "load": CPU in thousandths, connections, kbps) and
  // its placement weight; static origins report nothing.
  function load(o) {
    const l = o.load || {};
    const parts = [];
    if (l.cpu_permille || l.conns || l.sample_ms) {
      parts.push("CPU " + ((l.cpu_permille || 0) / 10).toFixed(1) + "%");
      parts.push(String(l.conns || 0) + " conns");
      parts.push("in " + bits((l.recv_kbps || 0) * 1000) + " · out " + bits((l.send_kbps || 0) * 1000));
    }
    if (o.weight && o.weight !== 1) parts.push("weight " + o.weight);
    if (parts.length === 0) return el("span", { class: "muted", text: o.static ? "static (not reported)" : "not reported" });
    return el("span", null, parts.join(" · "));
  }

  function renderOrigins(st) {
    const origins = (st.origins || []).slice().sort((a, b) => String(a.id).localeCompare(String(b.id)));
    const withActions = token() !== "";
    document.querySelectorAll("#origins .actions-col").forEach((c) => { c.hidden = !withActions; });
    $("origins-count").textContent = "(" + origins.length + ")";
    const now = st.generated_unix_ms || Date.now();
    const rows = origins.map((o) => {
      const eps = el("ul", { class: "endpoints" });
      for (const p of ["rtmp", "http", "api", "srt", "rtc"]) {
        if (o[p]) eps.append(el("li", null, el("span", { class: "proto", text: p }), " ", el("code", { text: o[p] })));
      }
      const name = el("th", { scope: "row" }, o.id);
      if (o.static) name.append(" ", badge("static", "self"));
      if (o.zone) name.append(el("div", { class: "muted small", text: "zone " + o.zone }));
      const health = td(o.healthy ? badge("healthy", "ok") : badge("down", "bad"));
      if (o.draining) health.append(" ", badge(o.evacuating ? "moving streams away" : "draining", "warn"));
      if (!o.healthy && o.health_reason) health.append(el("div", { class: "muted small reason", text: o.health_reason }));
      const alive = Math.max(o.last_probe_unix_ms || 0, o.last_heartbeat_unix_ms || 0);
      const seen = el("td", { title: alive ? iso(alive) : "" }, ago(alive, now));
      if (o.last_heartbeat_unix_ms) seen.append(el("div", { class: "muted small", text: "heartbeat " + ago(o.last_heartbeat_unix_ms, now) }));
      const cap = o.max_streams;
      const held = el("td", { class: "num", title: cap > 0 ? "streams held / max_streams" : "streams held (no limit)" },
        String(o.streams ?? 0) + (cap > 0 ? " / " + cap : ""));
      if (o.full) held.append(" ", badge("full", "warn"));
      const row = el("tr", { class: o.healthy ? null : "is-bad" }, name, health, seen, held, td(load(o)), td(eps));
      if (withActions) {
        const action = o.draining ? "undrain" : "drain";
        const b = el("button", { type: "button", class: "action " + action, "data-origin": o.id, "data-action": action,
          "aria-label": (o.draining ? "Undrain origin " : "Drain origin ") + o.id }, o.draining ? "Undrain" : "Drain");
        b.addEventListener("click", () => act(o.id, action, b));
        const cell = el("td", { class: "actions-col" }, b);
        if (!o.evacuating) {
          const m = el("button", { type: "button", class: "action move", "data-origin": o.id, "data-action": "move",
            "aria-label": "Drain origin " + o.id + " and move its streams away",
            title: "Drain, and move every live stream to another origin without a break" }, "Move streams");
          m.addEventListener("click", () => act(o.id, "move", m));
          cell.append(" ", m);
        }
        row.append(cell);
      }
      return row;
    });
    // Relative times change with every poll; the signature rounds them, so
    // the table stays stable between probes.
    const sig = JSON.stringify([origins.map((o) => [o, Math.round((now - Math.max(o.last_probe_unix_ms || 0, o.last_heartbeat_unix_ms || 0)) / 5000)]), withActions]);
    fill("origins", sig, rows, "No origins yet: point an SRS heartbeat at this node's /api/v1/srs/register, or start the nodes with --origin.", withActions ? 7 : 6);
  }

  async function act(id, action, button) {
    const out = $("action-result");
    button.disabled = true;
    out.hidden = false;
    out.className = "action-result";
    const verb = { drain: "Draining ", undrain: "Undraining ", move: "Moving the streams off " }[action];
    out.textContent = verb + id + "…";
    const path = action === "move" ? "drain?move=true" : action;
    try {
      const res = await fetch("mesh/v1/origins/" + encodeURIComponent(id) + "/" + path, {
        method: "POST",
        headers: { Authorization: "Bearer " + token(), Accept: "application/json" },
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
      let body = null;
      try { body = await res.json(); } catch (e) { /* not JSON */ }
      if (!res.ok || (body && body.code !== 0)) {
        throw new Error((body && body.message) || ("HTTP " + res.status));
      }
      out.classList.add("ok");
      out.textContent = "Origin " + id + { drain: " is draining.", undrain: " takes new streams again.",
        move: " is draining; its streams move away without a break." }[action];
      rendered.origins = null;
    } catch (e) {
      out.classList.add("bad");
      out.textContent = { drain: "Drain", undrain: "Undrain", move: "Moving the streams" }[action] + " of " + id + " failed: " + (e && e.message ? e.message : e);
    } finally {
      button.disabled = false;
    }
  }

  // The stream table joins the assignments of the status document with the
  // cluster-wide stream list (clients and bit rates), when the node has it.
  function renderStreams(st, doc) {
    const byKey = new Map();
    for (const a of st.assignments || []) {
      byKey.set(a.key, { key: a.key, origin: a.origin, healthy: a.origin_healthy, created: a.created_unix_ms, used: a.last_used_unix_ms,
        replicas: a.replicas || [], moving: a.moving || "" });
    }
    const counted = !!(doc && Array.isArray(doc.streams));
    for (const s of (doc && doc.streams) || []) {
      if (!s.key) continue;
      const r = byKey.get(s.key) || { key: s.key };
      r.origin = s.origin || r.origin || "";
      if (s.origin) r.healthy = s.origin_healthy;
      r.created = s.created_unix_ms || r.created;
      r.used = s.last_used_unix_ms || r.used;
      r.ingest = s.ingest_bps || 0;
      r.egress = s.egress_bps || 0;
      r.clients = s.clients || {};
      r.nodes = s.nodes || {};
      r.total = s.total_clients || 0;
      r.fanout = s.fanout || {};
      r.rtcFanout = s.rtc_fanout || {};
      r.replicas = s.replicas || r.replicas || [];
      r.moving = s.moving || r.moving || "";
      r.standbys = s.standbys || {};
      byKey.set(s.key, r);
    }
    const rows = [...byKey.values()].sort((a, b) => (b.total || 0) - (a.total || 0) || a.key.localeCompare(b.key));
    $("streams-count").textContent = "(" + rows.length + ")";
    const now = st.generated_unix_ms || Date.now();
    const trs = rows.map((r) => {
      const short = r.key.startsWith("__defaultVhost__/") ? r.key.slice("__defaultVhost__/".length) : r.key;
      const name = el("th", { scope: "row", title: r.key }, el("code", { text: short }));
      const origin = td(r.origin || el("span", { class: "muted", text: "unassigned" }));
      if (r.origin && r.healthy === false) origin.append(" ", badge("down", "bad"));
      for (const rep of r.replicas || []) origin.append(el("div", { class: "muted small", text: "replica " + rep }));
      if (r.moving) origin.append(el("div", { class: "small", text: "moving to " + r.moving }));
      for (const [node, n] of Object.entries(r.standbys || {})) {
        if (n > 0) origin.append(el("div", { class: "muted small", text: "standby publisher on " + node }));
      }
      const na = () => el("span", { class: "muted", text: counted ? "–" : "n/a" });
      return el("tr", { class: r.origin && r.healthy === false ? "is-bad" : null },
        name, origin,
        counted ? numTd(bits(r.ingest), "from publishers, summed over the nodes") : el("td", { class: "num" }, na()),
        counted ? numTd(bits(r.egress), "to players, summed over the nodes") : el("td", { class: "num" }, na()),
        td(counted ? counts(r.clients) : na()),
        td(counted ? counts(r.nodes, true) : na()),
        counted ? fanOutTd(r.fanout, r.rtcFanout) : el("td", { class: "num" }, na()),
        numTd(r.created ? duration(now - r.created) : "–", iso(r.created)),
        numTd(r.used ? ago(r.used, now) : "–", iso(r.used)));
    });
    fill("streams", JSON.stringify([rows, Math.round(now / 5000)]), trs, "No streams yet. Publish one to any node.", 9);
  }

  // fanOutTd renders a stream's shared upstreams over the nodes
  // ({"n1":{"upstreams":1,"players":70,"ratio":70}}) as "1 ↑ · 70×", and
  // its WebRTC upstreams (rtc, same form) as "WebRTC 1 ↑ · 30×", with the
  // nodes in the title.
  function fanOutTd(f, rtc) {
    const parts = [], per = [];
    for (const [label, m] of [["", f], ["WebRTC ", rtc]]) {
      let ups = 0, players = 0;
      for (const [node, v] of Object.entries(m || {})) {
        ups += v.upstreams || 0;
        players += v.players || 0;
        per.push(node + ": " + label + (v.upstreams || 0) + " upstream(s), " + (v.players || 0) + (label ? " viewers" : " players"));
      }
      if (ups > 0) parts.push(label + ups + " ↑ · " + Math.round(players / ups) + "×");
    }
    if (parts.length === 0) return numTd("–", "no shared upstream");
    return numTd(parts.join(" / "), per.sort().join("\n"));
  }

  // ---- events ----
  const EVENT_TEXT = {
    origin_up: (e) => ["Origin " + e.origin + " is up", "ok"],
    origin_down: (e) => ["Origin " + e.origin + " went down", "bad"],
    origin_added: (e) => ["Origin " + e.origin + " added", ""],
    origin_removed: (e) => ["Origin " + e.origin + " removed", "warn"],
    origin_drained: (e) => ["Origin " + e.origin + " drained", "warn"],
    origin_undrained: (e) => ["Origin " + e.origin + " undrained", "ok"],
    stream_moved: (e) => ["Stream " + (e.stream || "").replace(/^__defaultVhost__\//, "") + (e.move_kind === "planned" ? " moved without a break" : " moved") + (e.origin ? " to " + e.origin : ""), e.move_kind === "planned" ? "ok" : "warn"],
    replica_promoted: (e) => ["Replica " + (e.origin || "") + " took over " + (e.stream || "").replace(/^__defaultVhost__\//, ""), "warn"],
    players_reattached: (e) => ["Players of " + (e.stream || "").replace(/^__defaultVhost__\//, "") + " re-attached" + (e.origin ? " to " + e.origin : ""), "ok"],
    players_lost: (e) => ["Players of " + (e.stream || "").replace(/^__defaultVhost__\//, "") + " lost their stream", "bad"],
    publisher_switched: (e) => ["A standby publisher took over " + (e.stream || "").replace(/^__defaultVhost__\//, ""), "warn"],
    publisher_dropped: (e) => ["The publisher of " + (e.stream || "").replace(/^__defaultVhost__\//, "") + " dropped", "bad"],
    publisher_lost: (e) => ["The publisher of " + (e.stream || "").replace(/^__defaultVhost__\//, "") + " was lost", "bad"],
    publisher_returned: (e) => ["The publisher of " + (e.stream || "").replace(/^__defaultVhost__\//, "") + " came back in time", "ok"],
    leader: (e) => [e.member + " became leader", "accent"],
    node_joined: (e) => ["Node " + e.member + " joined", "ok"],
    node_left: (e) => ["Node " + e.member + " left", ""],
    node_failed: (e) => ["Node " + e.member + " failed", "bad"],
  };

  function renderEvents(doc, st) {
    const list = $("events");
    if (!doc) {
      $("events-count").textContent = "";
      if (rendered.events !== "none") {
        rendered.events = "none";
        list.replaceChildren(el("li", { class: "muted empty", text: "This node does not serve events." }));
      }
      return;
    }
    const evs = (doc.events || []).slice().reverse(); // newest first
    $("events-count").textContent = "(" + evs.length + ")";
    const now = st.generated_unix_ms || Date.now();
    const sig = JSON.stringify([evs.map((e) => [e.node, e.seq, e.time_unix_ms]), Math.round(now / 10000)]);
    if (rendered.events === sig) return;
    rendered.events = sig;
    if (evs.length === 0) {
      list.replaceChildren(el("li", { class: "muted empty", text: "Nothing has happened yet." }));
      return;
    }
    list.replaceChildren(...evs.map((e) => {
      const f = EVENT_TEXT[e.kind] || ((x) => [x.kind + " " + (x.origin || x.stream || x.member || ""), ""]);
      const [text, kind] = f(e);
      return el("li", { class: "event " + kind, "data-kind": e.kind },
        el("span", { class: "event-dot", "aria-hidden": "true" }),
        el("div", { class: "event-body" },
          el("div", { class: "event-text", text: text }),
          e.detail ? el("div", { class: "muted small event-detail", text: e.detail }) : null,
          el("div", { class: "muted small" },
            el("time", { datetime: iso(e.time_unix_ms), title: iso(e.time_unix_ms), text: clock(e.time_unix_ms) }),
            " · " + ago(e.time_unix_ms, now) + " · seen by " + e.node)));
    }));
  }

  // ---- charts ----
  // The page merges the nodes' histories: each node samples on its own
  // clock every interval_ms, so samples are put in buckets of the longest
  // interval and summed over the nodes. A bucket with no node's sample is a
  // gap, not a zero.
  const PROTO_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];
  const charts = {};

  function mergeHistory(hist) {
    const nodes = ((hist && hist.nodes) || []).filter((n) => n.ok && Array.isArray(n.samples));
    const interval = Math.max(1000, ...nodes.map((n) => n.interval_ms || 5000));
    const newest = Math.max(0, ...nodes.map((n) => (n.samples.length ? n.samples[n.samples.length - 1].t : 0)));
    const from = newest - WINDOW_MS;
    const buckets = new Map();
    const protos = new Set();
    for (const n of nodes) {
      for (const s of n.samples) {
        if (s.t < from) continue;
        const b = Math.round(s.t / interval) * interval;
        let m = buckets.get(b);
        if (!m) { m = { in: 0, out: 0, assign: 0, hls: 0, dash: 0, sessions: {}, nodes: new Set() }; buckets.set(b, m); }
        if (m.nodes.has(n.id)) continue; // one sample per node per bucket
        m.nodes.add(n.id);
        m.in += s.in_bps || 0;
        m.out += s.out_bps || 0;
        m.assign += s.assignments_per_s || 0;
        m.hls += s.hls_viewers_estimated || 0;
        m.dash += s.dash_viewers_estimated || 0;
        for (const [p, c] of Object.entries(s.sessions || {})) {
          m.sessions[p] = (m.sessions[p] || 0) + c;
          protos.add(p);
        }
      }
    }
    const ts = [...buckets.keys()].sort((a, b) => a - b);
    const protoList = [...protos].sort();
    const rows = ts.map((t) => buckets.get(t));
    return {
      x: ts.map((t) => t / 1000),
      in: rows.map((r) => r.in),
      out: rows.map((r) => r.out),
      assign: rows.map((r) => r.assign),
      hls: rows.map((r) => r.hls),
      dash: rows.map((r) => r.dash),
      protos: protoList,
      sessions: protoList.map((p) => rows.map((r) => r.sessions[p] || 0)),
    };
  }

  // hhmm labels a time tick (unix seconds): "14:05", or "14:05:30" when the
  // ticks are less than a minute apart.
  function hhmm(t, ticks) {
    const opts = { hour: "2-digit", minute: "2-digit", hour12: false };
    if (ticks.length > 1 && ticks[1] - ticks[0] < 60) opts.second = "2-digit";
    return new Date(t * 1000).toLocaleTimeString([], opts);
  }

  function cssVar(name, fallback) {
    const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  function chartWidth(box) {
    return Math.max(220, Math.floor(box.getBoundingClientRect().width) - 2);
  }

  // draw creates or updates the uPlot chart in box #id. series are
  // [{label, color, fill, dash}], data is [x, ...ys]. fmt says how values
  // read: fmt.unit(max) is the y axis's unit for the largest value shown
  // ("Mbit/s", "clients"), fmt.axis(v, unit, step) a tick in that unit,
  // fmt.value(v) a value in the legend. A change in the series (a new
  // protocol) or in the unit rebuilds the chart.
  function draw(id, series, data, fmt) {
    const box = $(id);
    const points = data[0].length;
    box.dataset.points = String(points);
    box.dataset.series = String(series.filter((s, i) => data[i + 1].some((v) => v > 0)).length);
    const top = Math.max(0, ...data.slice(1).map((ys) => Math.max(0, ...ys.map((v) => v || 0))));
    const unit = fmt.unit(Math.max(top * 1.1, fmt.minMax || 1));
    box.dataset.unit = unit;
    if (typeof uPlot !== "function") {
      box.textContent = "Charts unavailable: uPlot did not load.";
      return;
    }
    const key = JSON.stringify([series.map((s) => s.label), unit]);
    let c = charts[id];
    if (c && c.key !== key) { c.plot.destroy(); c = null; }
    if (!c) {
      box.replaceChildren();
      const grid = { stroke: cssVar("--line", "#dde1e7"), width: 1 };
      const axis = { stroke: cssVar("--muted", "#5b6474"), grid: grid, ticks: { stroke: grid.stroke, width: 1 } };
      const opts = {
        width: chartWidth(box),
        height: 170,
        cursor: { drag: { x: false, y: false } },
        legend: { live: true },
        // Away from the cursor, the legend shows the latest values.
        hooks: { setCursor: [(u) => { if (u.cursor.idx == null && u.data[0].length) u.setLegend({ idx: u.data[0].length - 1 }); }] },
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max * 1.1, fmt.minMax || 1)] } },
        axes: [
          // One line of wall-clock time per tick: uPlot's default adds a
          // second line with the date, which crowds a small chart.
          Object.assign({}, axis, { space: 70, values: (u, ticks) => ticks.map((t) => hhmm(t, ticks)) }),
          // The y axis names its unit (a rate says "/s") and its ticks are
          // numbers in that unit.
          Object.assign({}, axis, { size: 52, label: unit, labelSize: 18, labelFont: "12px system-ui, sans-serif",
            values: (u, vals, ax, space, step) => vals.map((v) => fmt.axis(v, unit, step)) }),
        ],
        series: [{ label: "time", value: (u, v) => (v == null ? "–" : new Date(v * 1000).toLocaleTimeString([], { hour12: false })) }]
          .concat(series.map((s) => ({
            label: s.label, stroke: s.color, width: 2, fill: s.fill || null, dash: s.dash || undefined, points: { show: false },
            value: (u, v) => (v == null ? "–" : fmt.value(v)),
          }))),
      };
      c = { key: key, plot: new uPlot(opts, data, box) };
      charts[id] = c;
    } else {
      c.plot.setData(data);
    }
    if (c.plot.cursor.idx == null && points) c.plot.setLegend({ idx: points - 1 });
  }

  function renderCharts(hist) {
    const h = mergeHistory(hist);
    const note = $("charts-note");
    note.textContent = h.x.length ? "" : "(collecting: the first samples arrive within 10 seconds)";
    // Bit rates scale to the largest value shown (kbit/s, Mbit/s, ...);
    // clients are counts; assignments a rate per second.
    const rate = {
      unit: (max) => BIT_UNITS[bitScale(max)],
      axis: (v, unit, step) => { const d = Math.pow(1000, BIT_UNITS.indexOf(unit)); return tick(v / d, step / d); },
      value: bits, minMax: 1000,
    };
    const count = { unit: () => "clients", axis: (v) => (Number.isInteger(v) ? String(v) : ""), value: (v) => String(Math.round(v)), minMax: 4 };
    const perSec = { unit: () => "assignments/s", axis: (v, unit, step) => tick(v, step), value: (v) => v.toFixed(2) + " /s", minMax: 1 };
    draw("chart-throughput", [
      { label: "in (from clients)", color: "#1f77b4", fill: "rgba(31,119,180,0.12)" },
      { label: "out (to clients)", color: "#2ca02c", fill: "rgba(44,160,44,0.10)" },
    ], [h.x, h.in, h.out], rate);
    const protos = h.protos.length ? h.protos : ["clients"];
    const sessions = h.protos.length ? h.sessions : [h.x.map(() => 0)];
    const clientSeries = protos.map((p, i) => ({ label: p, color: PROTO_COLORS[i % PROTO_COLORS.length] }));
    const clientData = [h.x, ...sessions];
    // HLS and DASH viewers hold no connection: the nodes estimate them
    // from the clients that fetched playlists and segments. They are drawn
    // dashed, apart from the sessions, when there are any.
    for (const [label, ys] of [["HLS viewers (estimate)", h.hls], ["DASH viewers (estimate)", h.dash]]) {
      if (!ys.some((v) => v > 0)) continue;
      clientSeries.push({ label: label, color: PROTO_COLORS[clientSeries.length % PROTO_COLORS.length], dash: [6, 4] });
      clientData.push(ys);
    }
    draw("chart-clients", clientSeries, clientData, count);
    draw("chart-assignments", [{ label: "assignments", color: "#9467bd", fill: "rgba(148,103,189,0.12)" }],
      [h.x, h.assign], perSec);
  }

  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      for (const [id, c] of Object.entries(charts)) c.plot.setSize({ width: chartWidth($(id)), height: 170 });
    }, 150);
  });

  // ---- token ----
  function setupToken() {
    const input = $("token");
    const state = $("token-state");
    const show = () => { state.textContent = token() ? "Token set for this tab." : ""; };
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      try { sessionStorage.setItem(TOKEN_KEY, input.value.trim()); } catch (e) { /* storage disabled */ }
      input.value = "";
      show();
      if (last.status) { rendered.origins = null; render(); }
    });
    $("token-clear").addEventListener("click", () => {
      try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* storage disabled */ }
      input.value = "";
      show();
      if (last.status) { rendered.origins = null; render(); }
    });
    show();
  }

  setupToken();
  poll();
})();
