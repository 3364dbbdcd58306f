package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/mesh/dashboard"
	"github.com/srs-mesh/srs-mesh/protocols/api"
	"github.com/srs-mesh/srs-mesh/protocols/fanout"
	"github.com/srs-mesh/srs-mesh/protocols/httpstream"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp"
	"github.com/srs-mesh/srs-mesh/protocols/srt"
	"github.com/srs-mesh/srs-mesh/protocols/webrtc"
	"github.com/srs-mesh/srs-mesh/protocols/webrtc/sfu"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/stream/httpjson"
)

// part is one client-facing server of a node. Serve runs until Close (nil)
// or a failure. Drain stops taking new clients and waits for the live ones
// to end, or for ctx. Close ends whatever still runs and waits for it.
type part struct {
	name  string
	serve func() error
	drain func(ctx context.Context) error
	close func()
}

// httpLimits bound every HTTP listener of a node (--http, --api and
// --system-api): how long a request may take to arrive, how long an idle
// keep-alive connection is kept, how large request headers may be, and how
// many connections may be open at once. Responses are not bounded: HTTP-FLV
// and HTTP-TS streams run for hours.
type httpLimits struct {
	readTimeout time.Duration          // a request's headers and body; 0: none (headers still within maxHeaderWait)
	idleTimeout time.Duration          // between requests on a connection; 0: none
	maxConns    int                    // per listener; 0: no cap
	refused     *prometheus.CounterVec // connections refused over maxConns, by listener; may be nil
}

const (
	// maxHeaderWait is the longest time a request's headers may take,
	// whatever --http-read-timeout says.
	maxHeaderWait = 10 * time.Second
	// maxHeaderBytes bounds a request line and headers; SRS's own requests
	// and players' (tokens in queries included) need a few KiB.
	maxHeaderBytes = 64 << 10
)

// newHTTPLimits checks the limit flags of o.
func newHTTPLimits(o serveOptions) (httpLimits, error) {
	switch {
	case o.httpReadTimeout < 0:
		return httpLimits{}, fmt.Errorf("--http-read-timeout must not be negative, got %v", o.httpReadTimeout)
	case o.httpIdleTimeout < 0:
		return httpLimits{}, fmt.Errorf("--http-idle-timeout must not be negative, got %v", o.httpIdleTimeout)
	case o.maxHTTPConns < 0:
		return httpLimits{}, fmt.Errorf("--max-http-conns must not be negative, got %d", o.maxHTTPConns)
	}
	return httpLimits{
		readTimeout: o.httpReadTimeout,
		idleTimeout: o.httpIdleTimeout,
		maxConns:    o.maxHTTPConns,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns,
			Name:      "connections_refused_total",
			Help:      "HTTP connections refused because --max-http-conns were open, by listener (http, api, https, api-https, system).",
		}, []string{"listener"}),
	}, nil
}

// server is an http.Server for h within l.
//
// ReadTimeout bounds reading a request, headers and body, and does not cut
// a long response: once the body has been read (at once when there is none)
// net/http clears the read deadline and only watches for the client going
// away, and no WriteTimeout is set. When a handler leaves a body unread, the
// deadline stays but nothing reads while the handler writes; the rest of the
// body is then read within the deadline, or the connection is closed.
func (l httpLimits) server(h http.Handler) *http.Server {
	headerWait := maxHeaderWait
	if l.readTimeout > 0 && l.readTimeout < headerWait {
		headerWait = l.readTimeout
	}
	idle := l.idleTimeout
	if idle == 0 {
		idle = -1 // zero would mean ReadTimeout to http.Server
	}
	return &http.Server{Handler: h, ReadHeaderTimeout: headerWait, ReadTimeout: l.readTimeout,
		IdleTimeout: idle, MaxHeaderBytes: maxHeaderBytes}
}

// listen caps the connections open at once on ln, counting refusals under
// the listener label.
func (l httpLimits) listen(label string, ln net.Listener) net.Listener {
	if l.maxConns <= 0 {
		return ln
	}
	var onRefuse func()
	if l.refused != nil {
		onRefuse = l.refused.WithLabelValues(label).Inc
	}
	return newConnLimit(ln, l.maxConns, onRefuse)
}

// httpPart serves h on ln (its refusals counted as listener label) with an
// http.Server within lim; draining is the server's graceful Shutdown, and
// then closes run in order.
func httpPart(name, label string, ln net.Listener, h http.Handler, lim httpLimits, closes ...func()) part {
	return serverPart(name, lim.server(h), lim.listen(label, ln), closes)
}

// httpsPart is httpPart over TLS: the connection cap applies to TCP
// connections before their handshake, which the server's header timeout
// bounds.
func httpsPart(name, label string, ln net.Listener, h http.Handler, lim httpLimits, cfg *tls.Config, closes ...func()) part {
	srv := lim.server(h)
	srv.TLSConfig = cfg
	return serverPart(name, srv, tls.NewListener(lim.listen(label, ln), cfg), closes)
}

// serverPart serves srv on ln; draining is the server's graceful Shutdown,
// and closing closes it, then runs closes in order.
func serverPart(name string, srv *http.Server, ln net.Listener, closes []func()) part {
	return part{
		name: name,
		serve: func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
		drain: srv.Shutdown,
		close: func() {
			srv.Close()
			for _, c := range closes {
				c()
			}
		},
	}
}

// defaultGCPercent is the collector's target of a node whose environment
// sets no GOGC: the heap may grow by half of what is live between
// collections, not by all of it (Go's default, 100). A node's live heap is
// mostly its players' state and its caches, and it allocates little per
// player (nothing per tag), so collecting twice as often costs little CPU
// and saves a third of the memory per player (docs/capacity.md); a small
// heap is given more room (minHeapGrowth). GOGC (and GOMEMLIMIT) in the
// environment override both.
const defaultGCPercent = 50

// runServe is the composition root of a node: it opens the listeners, starts
// the mesh and one part per protocol, and on ctx's end (or a part's failure)
// drains the parts within --drain-timeout, closes them and leaves the mesh.
func runServe(ctx context.Context, o serveOptions) error {
	log, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	if _, set := os.LookupEnv("GOGC"); !set {
		defer startGCPacer(defaultGCPercent, minHeapGrowth)()
	}
	resolveAddrs(&o)
	if bad := insecurities(o); len(bad) > 0 {
		if !o.insecure {
			return fmt.Errorf("refusing to start an open node (see docs/security.md; --insecure overrides):\n  %s", strings.Join(bad, "\n  "))
		}
		for _, b := range bad {
			log.Warn("INSECURE: running with --insecure although "+b, "node", o.nodeID)
		}
	}
	// The mesh names the node in its own log lines; everything else here
	// gets the attribute from this logger.
	cfg, err := buildMeshConfig(o, log)
	log = log.With("node", o.nodeID)
	if err != nil {
		return err
	}
	statics, creds, err := parseOrigins(o)
	if err != nil {
		return err
	}
	cfg.StaticOrigins = statics
	if _, note, insecure := apiWrites(o, creds.configured()); insecure {
		log.Warn("INSECURE: running with --insecure although " + note)
	} else if note != "" {
		log.Info(note)
	}
	if o.maxRTMPConns <= 0 {
		return flagError(fmt.Errorf("--max-rtmp-conns must be positive, got %d", o.maxRTMPConns))
	}
	lim, err := newHTTPLimits(o)
	if err != nil {
		return err
	}
	if _, _, err := rtcOfferLimit(o); err != nil {
		return err
	}
	clients, err := newClientAddrs(o, log)
	if err != nil {
		return err
	}
	if _, err := rtmpMaxMessage(o); err != nil {
		return err
	}
	if (o.httpsAddr != "" || o.apiHTTPSAddr != "" || o.rtmpsAddr != "") && (o.httpsCertFile == "" || o.httpsKeyFile == "") {
		return errors.New("--https, --api-https and --rtmps need --https-cert-file and --https-key-file")
	}
	if o.rtcTCPAddr != "" && (o.rtcAddr == "" || !o.rtcFanOut) {
		return errors.New("--rtc-tcp needs --rtc and --rtc-fanout")
	}
	var candidate netip.AddrPort
	if o.rtcAddr != "" {
		// Clients reach the media port, not the cluster: a node whose
		// cluster stays on loopback announces the host's address.
		base := cfg.AdvertiseAddr
		if base.IsLoopback() && !isLoopback(o.rtcAddr) {
			base = mesh.DefaultAdvertiseAddr(netip.AddrPort{}, netip.AddrPort{})
		}
		if candidate, err = rtcCandidate(o.rtcCandidate, base, o.rtcAddr); err != nil {
			return err
		}
	}
	// Listen first, so that a port in use fails before we join a mesh.
	var lns listeners
	defer lns.closeAll()
	if err := lns.open(o); err != nil {
		return err
	}
	lns.rtmp = clients.listen("rtmp", lns.rtmp)
	lns.http = clients.listen("http", lns.http)
	lns.api = clients.listen("api", lns.api)
	lns.https = clients.listen("https", lns.https) // the PROXY header comes before TLS
	lns.apiHTTPS = clients.listen("api-https", lns.apiHTTPS)
	lns.rtmps = clients.listen("rtmps", lns.rtmps)
	if len(clients.forwarded.Trusted) > 0 {
		log.Info("client addresses from trusted proxies", "trusted_proxies", clients.forwarded.Trusted,
			"forwarded_header", clients.forwarded.Header.String(), "proxy_protocol", clients.proxyProtocol)
	}

	// The node samples its throughput from the protocol servers' counters
	// once they exist.
	var served clientBytes
	cfg.Throughput, cfg.Serving = served.total, served.serving
	node, err := mesh.New(cfg)
	if err != nil {
		return flagError(err) // mesh's errors name it already
	}
	defer node.Close()
	log.Info("node started", "system_api", lns.system.Addr().String(), "advertise", cfg.AdvertiseAddr,
		"gossip", cfg.GossipAddr, "raft", cfg.RaftAddr, "bootstrap_expect", cfg.BootstrapExpect)
	log.Info("where to connect", nodeURLs(lns, cfg.AdvertiseAddr)...)
	logFileLimit(log, o)
	if len(cfg.StaticOrigins) == 0 {
		log.Info("no --origin given: streams route once an origin registers (SRS: heartbeat.url http://<this node>" +
			portOf(lns.system.Addr().String()) + "/api/v1/srs/register); `srs-mesh demo` runs a local mesh with two origins")
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(lim.refused, clients.refused)
	collector := &meshCollector{node: node, httpS: &httpStats{}}
	failovers := newFailoverMetrics(reg, log, node.Events())
	fan := newFanOut(o, failovers)
	defer fan.close()
	collector.fanOut = fan.reg
	parts, err := clientParts(o, lns, lim, clients, node, newTimedRouter(node, reg), collector, failovers, fan.reg, candidate, cfg.AdvertiseAddr, creds, log)
	if err != nil {
		return err
	}
	if fan.reg != nil || collector.rtcFanOut != nil {
		// Players follow a stream that moved at once, make-before-break
		// for a planned move; WebRTC viewers' upstreams re-attach.
		rtcFan := collector.rtcFanOut
		node.OnMoved(func(k stream.Key) {
			if fan.reg != nil {
				fan.reg.Switch(k.String())
			}
			if rtcFan != nil {
				rtcFan.Moved(k)
			}
		})
	}
	served.c.Store(collector)
	system := httpPart("system api", "system", lns.system, systemHandler(node, newMetricsHandler(reg, collector)), lim)

	serveErr := make(chan error, len(parts)+1)
	var wg sync.WaitGroup
	for _, p := range append(parts, system) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.serve(); err != nil {
				serveErr <- fmt.Errorf("%s: %w", p.name, err)
			}
		}()
	}

	var fatal error
	select {
	case <-ctx.Done():
		log.Info("shutting down: refusing new clients, draining sessions", "drain_timeout", o.drainTimeout)
	case fatal = <-serveErr:
		log.Error("listener failed", "err", fatal)
	}
	node.StopReady()
	drainCtx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
	defer cancel()
	if fatal != nil {
		cancel()
	}
	drainAll(drainCtx, parts)
	for _, p := range parts {
		p.close()
	}
	fan.close()
	leaveCtx, cancelLeave := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelLeave()
	if err := node.Leave(leaveCtx); err != nil {
		log.Warn("leaving the mesh", "err", err)
	}
	system.drain(leaveCtx)
	system.close()
	node.Close()
	wg.Wait()
	log.Info("stopped")
	return fatal
}

// fanOut is the node's one registry of shared upstreams (--fanout), handed
// to the RTMP and HTTP servers so that RTMP and HTTP-FLV players of a stream
// share one upstream; reg is nil without --fanout. It is closed after the
// servers that use it.
type fanOut struct {
	reg *fanout.Registry
}

func newFanOut(o serveOptions, failovers *failoverMetrics) fanOut {
	if !o.fanOut {
		return fanOut{}
	}
	return fanOut{fanout.NewRegistry(fanout.Config{Reattach: o.reattach, OnReattach: failovers.playReattached,
		PublishGrace: o.publishGrace,
		OnSwitch:     failovers.playSwitched,
		// Whatever an origin's RTMP play may send (see rtmp.Config.MaxMessageSize) fits a tag.
		MaxTagSize: max(int(o.rtmpMaxMessage), rtmp.OriginMaxMessageSize)})}
}

// close closes the registry, ending the upstreams it still holds; it is
// safe to call twice.
func (f fanOut) close() {
	if f.reg != nil {
		f.reg.Close()
	}
}

// clientParts builds one part per enabled client protocol, in the order
// they are logged: RTMP, HTTP streaming, SRT, WebRTC media, and the HTTP API
// port (SRS's API and WebRTC signalling).
func clientParts(o serveOptions, lns listeners, lim httpLimits, clients clientAddrs, node *mesh.Node, router *timedRouter, collector *meshCollector,
	failovers *failoverMetrics, fan *fanout.Registry, candidate netip.AddrPort, advertise netip.Addr, creds originCredentials, log *slog.Logger) ([]part, error) {
	var parts []part
	sessions := nodeSessions{node}
	standbyGate := meshStandbyGate{tel: node.Telemetry(), log: log.With("part", "standby")}
	var certs *certReloader
	if lns.https != nil || lns.apiHTTPS != nil || lns.rtmps != nil {
		var err error
		if certs, err = newCertReloader(o.httpsCertFile, o.httpsKeyFile, log.With("proto", "tls")); err != nil {
			return nil, err
		}
	}
	var rtmpServer *rtmp.Server
	if lns.rtmp != nil || lns.rtmps != nil {
		maxMessage, err := rtmpMaxMessage(o)
		if err != nil {
			return nil, err
		}
		s, err := rtmp.New(rtmp.Config{Router: router, Publisher: router, Sessions: sessions, Rerouter: router, OriginHealth: router, Sources: node,
			Logger: log.With("proto", "rtmp"), FanOut: fan, Failovers: failovers, MaxMessageSize: maxMessage,
			BackupPublish: o.backupPublish, Standbys: failovers, StandbyGate: standbyGate, PublisherDrops: failovers, PublishStall: o.publishStall, MaxConns: o.maxRTMPConns})
		if err != nil {
			return nil, err
		}
		collector.rtmp, rtmpServer = s, s
		// One server for both listeners: the last part drains and
		// closes it (and with it every listener it serves).
		noDrain := func(context.Context) error { return nil }
		var rtmpParts []part
		if lns.rtmp != nil {
			log.Info("rtmp listening", "addr", lns.rtmp.Addr().String())
			rtmpParts = append(rtmpParts, part{name: "rtmp", serve: func() error { return s.Serve(lns.rtmp) }, drain: noDrain, close: func() {}})
		}
		if lns.rtmps != nil {
			// The TLS handshake runs at the first read, within the
			// RTMP handshake's deadline.
			tlsLn := tls.NewListener(lns.rtmps, certs.rtmpsConfig())
			log.Info("rtmps listening", "addr", lns.rtmps.Addr().String())
			rtmpParts = append(rtmpParts, part{name: "rtmps", serve: func() error { return s.Serve(tlsLn) }, drain: noDrain, close: func() {}})
		}
		rtmpParts[len(rtmpParts)-1].drain = s.Drain
		rtmpParts[len(rtmpParts)-1].close = func() { s.Close() }
		parts = append(parts, rtmpParts...)
	}
	if lns.http != nil || lns.https != nil {
		hc := httpstream.Config{Router: router, Epochs: router, Sessions: sessions, Logger: log.With("proto", "http"),
			Tokens: node, CacheBytes: o.cacheSize.cacheBytes(), PlaylistCacheTTL: o.playlistTTL, FanOut: fan}
		if rtmpServer != nil && fan != nil {
			// HTTP-FLV players' shared upstream is an RTMP play wherever
			// the origin serves RTMP.
			hc.RTMPUpstream = rtmpServer.OpenFLV
		}
		hs, err := httpstream.New(hc)
		if err != nil {
			return nil, err
		}
		collector.httpStream = hs
		h := clients.handler(collector.httpS.wrap(hs.Handler()))
		var streamParts []part
		if lns.http != nil {
			log.Info("http streaming listening", "addr", lns.http.Addr().String())
			streamParts = append(streamParts, httpPart("http streaming", "http", lns.http, h, lim))
		}
		if lns.https != nil {
			log.Info("https streaming listening", "addr", lns.https.Addr().String())
			streamParts = append(streamParts, httpsPart("https streaming", "https", lns.https, h, lim, certs.tlsConfig()))
		}
		// The last part to drain also drains the HTTP-FLV players on
		// taken-over connections, and closes the server.
		p := &streamParts[len(streamParts)-1]
		shutdown, closeSrv := p.drain, p.close
		p.drain = func(ctx context.Context) error {
			return errors.Join(shutdown(ctx), hs.DrainPlayers(ctx))
		}
		p.close = func() {
			closeSrv()
			hs.Close()
		}
		parts = append(parts, streamParts...)
	}
	udpBuf, err := udpBuffer(o)
	if err != nil {
		return nil, err
	}
	if lns.srt != nil {
		s, err := srt.New(srt.Config{Router: router, Publisher: router, Sessions: sessions, Logger: log.With("proto", "srt"),
			SocketBuffer:  udpBuf,
			BackupPublish: o.backupPublish, Live: liveOnOrigin(newSRTLiveClient(), creds.get, node), PublishStall: o.publishStall, Standbys: srtStandbys{failovers}, StandbyGate: standbyGate})
		if err != nil {
			return nil, err
		}
		collector.srt = s
		log.Info("srt listening", "addr", lns.srt.LocalAddr().String())
		parts = append(parts, part{name: "srt", serve: func() error { return s.Serve(lns.srt) }, drain: s.Drain, close: func() { s.Close() }})
	}
	var rtc *webrtc.Server
	if lns.rtc != nil {
		offerRate, offerBurst, err := rtcOfferLimit(o)
		if err != nil {
			return nil, err
		}
		store := newRTCStore(node)
		cfg := webrtc.Config{Router: router, Publisher: router, Store: store, Activity: node, Sessions: sessions,
			Logger: log.With("proto", "webrtc"), Candidate: candidate, OfferRate: offerRate, OfferBurst: offerBurst,
			SocketBuffer: udpBuf}
		var fan *sfu.Server
		var relay atomic.Pointer[webrtc.Server]
		if o.rtcFanOut {
			if fan, err = newRTCFanOut(o, lns.rtc, lns.rtcTCP, router, sessions, store, node, candidate, advertise, &relay, sfuBackup{router, node, whipStandbys{failovers}, standbyGate}, log); err != nil {
				return nil, err
			}
			cfg.Viewers, cfg.Tap = fan, fan
			if o.backupPublish {
				cfg.Standbys = fan
			}
			collector.rtcFanOut = fan
		}
		s, err := webrtc.New(cfg)
		if err != nil {
			if fan != nil {
				fan.Close()
			}
			return nil, err
		}
		relay.Store(s)
		rtc, collector.rtc = s, s
		log.Info("webrtc media listening", "addr", lns.rtc.LocalAddr().String(), "candidate", candidate.String(), "fanout", fan != nil)
		p := part{name: "webrtc", serve: func() error { return s.ServeUDP(lns.rtc) }, drain: s.Drain, close: func() { s.Close() }}
		if fan != nil {
			p.drain = func(ctx context.Context) error { return errors.Join(s.Drain(ctx), fan.Drain(ctx)) }
			p.close = func() { fan.Close(); s.Close() }
		}
		parts = append(parts, p)
	}
	// The API port and its HTTPS twin each decide their writes by their
	// own address (apiWrites): a loopback --api does not open the writes
	// of a public --api-https.
	apiHandler := func(addr string) (http.Handler, func(), error) {
		withAddr := o
		withAddr.apiAddr = addr
		openWrites, _, _ := apiWrites(withAddr, creds.configured())
		srsAPI, err := api.New(api.Config{Origins: apiOrigins{node}, NodeID: o.nodeID,
			Logger: log.With("proto", "api"), Version: version, Token: o.token,
			OpenWrites: openWrites, Credentials: creds.get})
		if err != nil {
			return nil, nil, err
		}
		mux := http.NewServeMux()
		mux.Handle("/api/", srsAPI.Handler())
		if rtc != nil {
			mux.Handle("/rtc/", rtc.Handler())
		}
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			httpjson.Error(w, http.StatusBadRequest, "this port serves SRS's API under /api/v1/ and WebRTC signalling under /rtc/v1/ only")
		})
		return clients.handler(mux), srsAPI.Close, nil
	}
	if lns.api != nil {
		h, closeAPI, err := apiHandler(o.apiAddr)
		if err != nil {
			return nil, err
		}
		log.Info("http api listening", "addr", lns.api.Addr().String())
		parts = append(parts, httpPart("http api", "api", lns.api, h, lim, closeAPI))
	}
	if lns.apiHTTPS != nil {
		h, closeAPI, err := apiHandler(o.apiHTTPSAddr)
		if err != nil {
			return nil, err
		}
		withAddr := o
		withAddr.apiAddr = o.apiHTTPSAddr
		if _, note, insecure := apiWrites(withAddr, creds.configured()); insecure {
			log.Warn("INSECURE: running with --insecure although " + strings.Replace(note, "--api ", "--api-https ", 1))
		} else if note != "" {
			log.Info(strings.Replace(note, "--api ", "--api-https ", 1))
		}
		log.Info("https api listening", "addr", lns.apiHTTPS.Addr().String())
		parts = append(parts, httpsPart("https api", "api-https", lns.apiHTTPS, h, lim, certs.tlsConfig(), closeAPI))
	}
	return parts, nil
}

// portOf is ":port" of a "host:port" address.
func portOf(addr string) string {
	if _, port, err := net.SplitHostPort(addr); err == nil {
		return ":" + port
	}
	return ""
}

// drainAll drains every part at once and returns when all are drained or
// ctx ends.
func drainAll(ctx context.Context, parts []part) {
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.drain(ctx)
		}()
	}
	wg.Wait()
}

// systemHandler is the system API: the mesh's routes (readiness included,
// which the node lowers itself when it begins to drain), /metrics, and the
// dashboard at /.
func systemHandler(node *mesh.Node, metrics http.Handler) http.Handler {
	meshAPI := node.Handler()
	mux := http.NewServeMux()
	mux.Handle("/api/", meshAPI)
	mux.Handle("/mesh/", meshAPI)
	mux.Handle("/healthz", meshAPI)
	mux.Handle("/readyz", meshAPI)
	mux.Handle("/metrics", metrics)
	mux.Handle("/", dashboard.Handler())
	return mux
}

// listeners are the node's sockets, opened before it joins a mesh; an empty
// address leaves one nil. closeAll closes whatever is still open.
type listeners struct {
	system, rtmp, http, api net.Listener
	// https, apiHTTPS and rtmps are plain TCP listeners; TLS is added
	// over them by the parts that serve them.
	https, apiHTTPS, rtmps net.Listener
	srt, rtc               net.PacketConn
	rtcTCP                 net.Listener // ICE-TCP of --rtc-fanout's viewers
	closers                []interface{ Close() error }
}

// open opens every listener o names.
func (l *listeners) open(o serveOptions) error {
	var err error
	for _, t := range []struct {
		name, addr string
		ln         *net.Listener
	}{{"system API", o.systemAPI, &l.system}, {"rtmp", o.rtmpAddr, &l.rtmp}, {"http", o.httpAddr, &l.http}, {"api", o.apiAddr, &l.api},
		{"https", o.httpsAddr, &l.https}, {"api-https", o.apiHTTPSAddr, &l.apiHTTPS}, {"rtmps", o.rtmpsAddr, &l.rtmps}} {
		if *t.ln, err = l.tcp(t.name, t.addr); err != nil {
			return err
		}
	}
	if l.system == nil {
		return errors.New("--system-api must not be empty")
	}
	if l.srt, err = l.udp("srt", o.srtAddr); err != nil {
		return err
	}
	if l.rtcTCP, err = l.tcp("rtc-tcp", o.rtcTCPAddr); err != nil {
		return err
	}
	l.rtc, err = l.udp("rtc", o.rtcAddr)
	return err
}

func (l *listeners) tcp(name, addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	l.closers = append(l.closers, ln)
	return ln, nil
}

func (l *listeners) udp(name, addr string) (net.PacketConn, error) {
	if addr == "" {
		return nil, nil
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	l.closers = append(l.closers, pc)
	return pc, nil
}

func (l *listeners) closeAll() {
	for _, c := range l.closers {
		c.Close()
	}
}
