// srs-mesh dashboard: polls this node's cluster API and renders it.
// Every value from the API is written with textContent, never as HTML.
"use strict";

(function () {
  const POLL_MS = 2000;
  const TIMEOUT_MS = 5000;
  const TOKEN_KEY = "srs-mesh.token";

  const $ = (id) => document.getElementById(id);
  let lastStatus = null;
  let lastStreams = null; // entries of mesh/v1/streams, or null when the node has none
  let lastOK = 0;
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
  const badge = (text, kind) => el("span", { class: "badge " + (kind || ""), text: text });

  function clock(ms) {
    if (!ms) return "never";
    const d = new Date(ms);
    return d.toLocaleTimeString([], { hour12: false });
  }

  function ago(ms, now) {
    if (!ms) return "never";
    const s = Math.max(0, Math.round((now - ms) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    return Math.floor(s / 3600) + " h ago";
  }

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

  function streamEntries(doc) {
    if (!doc) return null;
    if (Array.isArray(doc)) return doc;
    if (Array.isArray(doc.streams)) return doc.streams;
    if (doc.data && Array.isArray(doc.data.streams)) return doc.data.streams;
    if (Array.isArray(doc.data)) return doc.data;
    return null;
  }

  async function poll() {
    try {
      const st = await getJSON("mesh/v1/status");
      if (st.notFound || !st.body) throw new Error("no cluster status at mesh/v1/status");
      lastStatus = st.body;
      lastOK = Date.now();
      try {
        const ss = await getJSON("mesh/v1/streams");
        lastStreams = ss.notFound ? null : streamEntries(ss.body);
      } catch (e) {
        lastStreams = null; // optional: the status alone still renders
      }
      showBanner(null);
      render();
    } catch (e) {
      const since = lastOK ? " Showing data from " + clock(lastOK) + "." : "";
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

  // ---- rendering ----
  function render() {
    const st = lastStatus;
    $("fact-node").textContent = st.node_id || "–";
    $("fact-leader").textContent = st.leader || "none";
    $("fact-raft").textContent = st.raft_state || "–";
    $("fact-term").textContent = st.term != null ? String(st.term) : "–";
    $("fact-applied").textContent = st.applied_index != null ? st.applied_index + " / " + (st.commit_index ?? "–") : "–";
    $("fact-degraded").textContent = st.degraded_routes != null ? String(st.degraded_routes) : "–";
    $("fact-updated").textContent = clock(st.generated_unix_ms || Date.now());
    $("fact-leader").classList.toggle("warn", !st.leader);
    renderNodes(st);
    renderOrigins(st);
    renderStreams(st, lastStreams);
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

  function renderNodes(st) {
    const members = (st.members || []).slice().sort((a, b) => String(a.id).localeCompare(String(b.id)));
    $("nodes-count").textContent = "(" + members.length + ")";
    const rows = members.map((m) => {
      const leader = m.id === st.leader || m.raft_role === "leader";
      const name = el("th", { scope: "row" }, m.id);
      if (leader) name.append(" ", badge("leader", "leader"));
      if (m.id === st.node_id) name.append(" ", badge("this node", "self"));
      const gs = m.gossip_state || "unknown";
      return el("tr", { class: leader ? "is-leader" : null },
        name,
        td(badge(gs, gs === "alive" ? "ok" : gs === "suspect" ? "warn" : "bad")),
        td(m.raft_role || "none", m.voter === false && m.raft_role !== "none" ? " (non-voter)" : "",
          m.zone ? el("div", { class: "muted small", text: "zone " + m.zone }) : null),
        td(el("code", { text: m.api_addr || "" })),
        td(el("code", { text: m.gossip_addr || "" })),
        td(el("code", { text: m.raft_addr || "" })));
    });
    fill("nodes", JSON.stringify([members, st.leader, st.node_id]), rows, "No members known.", 6);
  }

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }

  // loadTitle describes an origin's reported load and weight.
  function loadTitle(o) {
    const l = o.load || {};
    const parts = ["weight " + (o.weight || 1)];
    if (l.cpu_permille !== undefined && (l.cpu_permille || l.conns || l.sample_ms)) {
      parts.push("cpu " + (l.cpu_permille / 10).toFixed(1) + "%", "conns " + (l.conns || 0),
        "in " + (l.recv_kbps || 0) + " kbps", "out " + (l.send_kbps || 0) + " kbps");
    }
    return parts.join(", ");
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
      const health = o.healthy ? td(badge("healthy", "ok"))
        : td(badge("unhealthy", "bad"), o.health_reason ? el("div", { class: "muted small", text: o.health_reason }) : null);
      const row = el("tr", { class: o.healthy ? null : "is-bad" },
        name,
        health,
        td(o.draining ? badge("draining", "warn") : "no"),
        el("td", { class: "num", title: loadTitle(o),
          text: String(o.streams ?? 0) + (o.max_streams ? " / " + o.max_streams : "") + (o.full ? " full" : "") }),
        td(eps),
        el("td", { title: o.last_heartbeat_unix_ms ? new Date(o.last_heartbeat_unix_ms).toISOString() : "", text: ago(o.last_heartbeat_unix_ms, now) }),
        el("td", { title: o.last_probe_unix_ms ? new Date(o.last_probe_unix_ms).toISOString() : "", text: ago(o.last_probe_unix_ms, now) }));
      if (withActions) {
        const action = o.draining ? "undrain" : "drain";
        const b = el("button", { type: "button", class: "action " + action, "data-origin": o.id, "data-action": action,
          "aria-label": (o.draining ? "Undrain origin " : "Drain origin ") + o.id }, o.draining ? "Undrain" : "Drain");
        b.addEventListener("click", () => act(o.id, action, b));
        row.append(el("td", { class: "actions-col" }, b));
      }
      return row;
    });
    // Relative times change with every poll; the signature leaves them out
    // only to round them, so the table stays stable between heartbeats.
    const sig = JSON.stringify([origins.map((o) => [o, Math.round((now - (o.last_heartbeat_unix_ms || 0)) / 5000)]), withActions]);
    fill("origins", sig, rows, "No origins registered.", withActions ? 8 : 7);
  }

  async function act(id, action, button) {
    const out = $("action-result");
    button.disabled = true;
    out.hidden = false;
    out.className = "action-result";
    out.textContent = (action === "drain" ? "Draining " : "Undraining ") + id + "…";
    try {
      const res = await fetch("mesh/v1/origins/" + encodeURIComponent(id) + "/" + action, {
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
      out.textContent = "Origin " + id + (action === "drain" ? " is draining." : " takes new streams again.");
      rendered.origins = null;
    } catch (e) {
      out.classList.add("bad");
      out.textContent = (action === "drain" ? "Drain" : "Undrain") + " of " + id + " failed: " + (e && e.message ? e.message : e);
    } finally {
      button.disabled = false;
    }
  }

  // Stream columns: the assignment's key and origin always; then every field
  // the node's stream list has for at least one stream (nested objects such
  // as per-protocol client counts become one column per member).
  function flatten(entry) {
    const out = {};
    for (const [k, v] of Object.entries(entry || {})) {
      if (v !== null && typeof v === "object" && !Array.isArray(v)) {
        for (const [k2, v2] of Object.entries(v)) {
          if (v2 === null || typeof v2 !== "object") out[k + " " + k2] = v2;
        }
      } else if (!Array.isArray(v)) {
        out[k] = v;
      }
    }
    return out;
  }

  function keyOf(e) {
    if (e.key) return String(e.key);
    if (e.stream_key) return String(e.stream_key);
    if (e.app && (e.stream || e.name)) return (e.vhost || "__defaultVhost__") + "/" + e.app + "/" + (e.stream || e.name);
    return "";
  }

  function renderStreams(st, entries) {
    const byKey = new Map();
    for (const a of st.assignments || []) {
      byKey.set(a.key, { key: a.key, origin: a.origin, healthy: a.origin_healthy, created: a.created_unix_ms, used: a.last_used_unix_ms, extra: {} });
    }
    for (const e of entries || []) {
      const k = keyOf(e);
      if (!k) continue;
      const row = byKey.get(k) || { key: k, origin: e.origin || "", extra: {} };
      const flat = flatten(e);
      for (const skip of ["key", "stream_key", "origin", "vhost", "app", "stream", "name"]) delete flat[skip];
      row.extra = flat;
      byKey.set(k, row);
    }
    const rows = [...byKey.values()].sort((a, b) => a.key.localeCompare(b.key));
    const extraCols = [];
    for (const r of rows) {
      for (const c of Object.keys(r.extra)) if (!extraCols.includes(c)) extraCols.push(c);
    }
    const hasTimes = rows.some((r) => r.created);
    const cols = ["Stream key", "Origin"].concat(hasTimes ? ["Assigned", "Last used"] : [], extraCols);
    $("streams-count").textContent = "(" + rows.length + ")";
    const head = $("streams").tHead.rows[0];
    const headSig = JSON.stringify(cols);
    if (head.dataset.sig !== headSig) {
      head.dataset.sig = headSig;
      head.replaceChildren(...cols.map((c, i) => el("th", { scope: "col", class: i >= cols.length - extraCols.length && i > 1 ? "num" : null, text: c })));
    }
    const now = st.generated_unix_ms || Date.now();
    const trs = rows.map((r) => {
      const origin = td(r.origin || "–");
      if (r.healthy === false) origin.append(" ", badge("origin unhealthy", "bad"));
      const tr = el("tr", null, el("th", { scope: "row" }, el("code", { text: r.key })), origin);
      if (hasTimes) tr.append(td(clock(r.created)), td(ago(r.used, now)));
      for (const c of extraCols) {
        const v = r.extra[c];
        tr.append(el("td", { class: typeof v === "number" ? "num" : null, text: v === undefined ? "" : String(v) }));
      }
      return tr;
    });
    fill("streams", JSON.stringify([rows, Math.round(now / 5000)]), trs, "No streams assigned.", cols.length);
  }

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
      if (lastStatus) { rendered.origins = null; render(); }
    });
    $("token-clear").addEventListener("click", () => {
      try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* storage disabled */ }
      input.value = "";
      show();
      if (lastStatus) { rendered.origins = null; render(); }
    });
    show();
  }

  setupToken();
  poll();
})();
