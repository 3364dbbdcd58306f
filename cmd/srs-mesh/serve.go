package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/mesh/dashboard"
	"github.com/srs-mesh/srs-mesh/protocols/api"
	httpstream "github.com/srs-mesh/srs-mesh/protocols/http"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp"
	"github.com/srs-mesh/srs-mesh/protocols/srt"
	"github.com/srs-mesh/srs-mesh/protocols/webrtc"
	"github.com/srs-mesh/srs-mesh/stream"
)

// serveOptions are the raw values of the serve flags.
type serveOptions struct {
	nodeID          string
	dataDir         string
	bootstrapExpect int
	join            []string
	gossipAddr      string
	raftAddr        string
	advertiseAddr   string
	systemAPI       string
	rtmpAddr        string
	httpAddr        string
	apiAddr         string
	rtcAddr         string
	rtcCandidate    string
	srtAddr         string
	origins         []string
	originTimeout   time.Duration
	drainTimeout    time.Duration
	token           string
	gossipKey       string
	logLevel        string
	logFormat       string
}

// envPrefix is prepended to a flag's name (upper case, dashes as
// underscores) to form the environment variable that sets it.
const envPrefix = "SRS_MESH_"

func newServeCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a node",
		Long: `Run an srs-mesh node. With no flags it runs a single-node mesh on the
default ports (RTMP 1935, HTTP 8080, system API 12025).

Every flag can also be set with an environment variable SRS_MESH_<FLAG>, upper
case with dashes as underscores (SRS_MESH_BOOTSTRAP_EXPECT=3). Repeatable flags
take a comma-separated list (--origin: separated by ';').`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags(), os.LookupEnv); err != nil {
				return err
			}
			return runServe(cmd.Context(), o)
		},
	}
	host, _ := os.Hostname()
	f := cmd.Flags()
	f.StringVar(&o.nodeID, "node-id", host, "unique, stable id of this node (default: hostname)")
	f.StringVar(&o.dataDir, "data-dir", "./srs-mesh-data", "directory for the Raft log and snapshots")
	f.IntVar(&o.bootstrapExpect, "bootstrap-expect", 1, "number of nodes that form a new cluster together")
	f.StringSliceVar(&o.join, "join", nil, "gossip address (host:port) of another node; repeatable; DNS names are retried until they resolve")
	f.StringVar(&o.gossipAddr, "gossip-addr", "0.0.0.0:7946", "gossip bind address (tcp and udp)")
	f.StringVar(&o.raftAddr, "raft-addr", "0.0.0.0:7947", "Raft bind address")
	f.StringVar(&o.advertiseAddr, "advertise-addr", "", "IP address other nodes use for this node (default: the bind address if specific, else the first non-loopback address)")
	f.StringVar(&o.systemAPI, "system-api", ":12025", "system API address: origin registration, cluster API, metrics")
	f.StringVar(&o.rtmpAddr, "rtmp", ":1935", "RTMP listen address (empty disables)")
	f.StringVar(&o.httpAddr, "http", ":8080", "HTTP streaming listen address: HTTP-FLV, HTTP-TS, HLS, DASH (empty disables)")
	f.StringVar(&o.apiAddr, "api", ":1985", "HTTP API listen address: SRS API and WebRTC signalling (empty disables)")
	f.StringVar(&o.rtcAddr, "rtc", ":8000", "WebRTC media UDP address (empty disables)")
	f.StringVar(&o.rtcCandidate, "rtc-candidate", "", "IP (or IP:port) announced in WebRTC candidates (default: the advertise address with the --rtc port)")
	f.StringVar(&o.srtAddr, "srt", ":10080", "SRT UDP address (empty disables)")
	f.StringArrayVar(&o.origins, "origin", nil, "static origin, e.g. id=o1,ip=10.0.0.5,rtmp=1935,http=8080,api=1985,srt=10080,rtc=8000; repeatable")
	f.DurationVar(&o.originTimeout, "origin-timeout", 4*time.Second, "how long an origin may fail probes and miss heartbeats before it is unhealthy")
	f.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "on shutdown, how long existing sessions may keep running")
	f.StringVar(&o.token, "token", "", "bearer token required by write endpoints (register, drain); also accepted as ?token=, and by register as the last path segment (/api/v1/srs/register/<token>)")
	f.StringVar(&o.gossipKey, "gossip-key", "", "base64 key (16, 24 or 32 bytes) that encrypts gossip")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	return cmd
}

// applyEnv sets every flag that was not given on the command line from its
// SRS_MESH_* environment variable, if present.
func applyEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	var errs []error
	fs.VisitAll(func(fl *pflag.Flag) {
		if fl.Changed {
			return
		}
		name := envPrefix + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		v, ok := lookup(name)
		if !ok {
			return
		}
		var values []string
		switch fl.Value.Type() {
		case "stringArray":
			values = strings.Split(v, ";")
		default:
			values = []string{v}
		}
		for _, one := range values {
			if strings.TrimSpace(one) == "" && len(values) > 1 {
				continue
			}
			if err := fs.Set(fl.Name, strings.TrimSpace(one)); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	return errors.Join(errs...)
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: want text or json, got %q", format)
}

// buildMeshConfig turns flags into a mesh.Config. It also returns the system
// API listen address.
func buildMeshConfig(o serveOptions, log *slog.Logger) (mesh.Config, error) {
	cfg := mesh.DefaultConfig()
	if strings.TrimSpace(o.nodeID) == "" {
		return cfg, errors.New("--node-id is empty and the hostname is unknown")
	}
	if o.bootstrapExpect < 1 {
		return cfg, fmt.Errorf("--bootstrap-expect must be at least 1, got %d", o.bootstrapExpect)
	}
	cfg.NodeID = o.nodeID
	cfg.DataDir = o.dataDir
	cfg.BootstrapExpect = o.bootstrapExpect
	cfg.Join = o.join
	cfg.GossipAddr = o.gossipAddr
	cfg.RaftAddr = o.raftAddr
	cfg.AdvertiseAddr = o.advertiseAddr
	cfg.OriginTimeout = o.originTimeout
	cfg.Token = o.token
	cfg.Logger = log
	if o.gossipKey != "" {
		key, err := base64.StdEncoding.DecodeString(o.gossipKey)
		if err != nil {
			return cfg, fmt.Errorf("--gossip-key: not base64: %w", err)
		}
		if n := len(key); n != 16 && n != 24 && n != 32 {
			return cfg, fmt.Errorf("--gossip-key: want 16, 24 or 32 bytes, got %d", n)
		}
		cfg.GossipKey = key
	}
	for _, spec := range o.origins {
		org, err := stream.ParseStaticOrigin(spec)
		if err != nil {
			return cfg, fmt.Errorf("--origin %q: %w", spec, err)
		}
		cfg.StaticOrigins = append(cfg.StaticOrigins, org)
	}
	// The system API address other nodes use to forward writes here.
	_, port, err := net.SplitHostPort(o.systemAPI)
	if err != nil {
		return cfg, fmt.Errorf("--system-api: %w", err)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return cfg, fmt.Errorf("--system-api: bad port %q", port)
	}
	advIP := o.advertiseAddr
	if advIP == "" {
		advIP = defaultAdvertiseIP(o.gossipAddr)
	}
	cfg.AdvertiseAddr = advIP
	cfg.APIAddr = net.JoinHostPort(advIP, port)
	return cfg, nil
}

// segmentSecret derives the key that signs HLS/DASH segment tokens. Every
// node of a mesh must derive the same key, so it comes from the shared token
// (or gossip key) when one is set, and from a fixed label otherwise: tokens
// then only prove integrity, not secrecy, which is enough to keep forged
// tokens from reaching arbitrary origins because they name no address.
func segmentSecret(o serveOptions) []byte {
	h := sha256.New()
	h.Write([]byte("srs-mesh segment token v1\x00"))
	h.Write([]byte(o.token))
	h.Write([]byte{0})
	h.Write([]byte(o.gossipKey))
	return h.Sum(nil)
}

func runServe(ctx context.Context, o serveOptions) error {
	log, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	// The mesh names the node in its own log lines; everything else here
	// gets the attribute from this logger.
	cfg, err := buildMeshConfig(o, log)
	log = log.With("node", o.nodeID)
	if err != nil {
		return err
	}
	var candidate netip.AddrPort
	if o.rtcAddr != "" {
		if candidate, err = rtcCandidate(o.rtcCandidate, cfg.AdvertiseAddr, o.rtcAddr); err != nil {
			return err
		}
	}

	// Listen first, so that a port in use fails before we join a mesh.
	var lns listeners
	defer lns.closeAll()
	sysLn, err := lns.tcp("system API", o.systemAPI)
	if err != nil {
		return err
	}
	rtmpLn, err := lns.tcp("rtmp", o.rtmpAddr)
	if err != nil {
		return err
	}
	httpLn, err := lns.tcp("http", o.httpAddr)
	if err != nil {
		return err
	}
	apiLn, err := lns.tcp("api", o.apiAddr)
	if err != nil {
		return err
	}
	srtPC, err := lns.udp("srt", o.srtAddr)
	if err != nil {
		return err
	}
	rtcPC, err := lns.udp("rtc", o.rtcAddr)
	if err != nil {
		return err
	}

	node, err := mesh.New(cfg)
	if err != nil {
		return fmt.Errorf("mesh: %w", err)
	}
	defer node.Close()
	log.Info("node started", "system_api", sysLn.Addr().String(), "advertise", cfg.AdvertiseAddr,
		"gossip", cfg.GossipAddr, "raft", cfg.RaftAddr, "bootstrap_expect", cfg.BootstrapExpect)

	var wg sync.WaitGroup
	serveErr := make(chan error, 8)
	var draining atomic.Bool
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !draining.Load() {
				serveErr <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	serveHTTP := func(name string, srv *http.Server, ln net.Listener) {
		log.Info(name+" listening", "addr", ln.Addr().String())
		run(name, func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}

	reg := prometheus.NewRegistry()
	router := newTimedRouter(node, reg)
	collector := &meshCollector{node: node, httpS: &httpStats{}}
	sysSrv := &http.Server{Handler: systemHandler(node, &draining, newMetricsHandler(reg, collector)),
		ReadHeaderTimeout: 10 * time.Second}

	var rtmpSrv *rtmp.Server
	if rtmpLn != nil {
		rtmpSrv, err = rtmp.New(rtmp.Config{Router: router, Sessions: node, Logger: log.With("proto", "rtmp")})
		if err != nil {
			return err
		}
		log.Info("rtmp listening", "addr", rtmpLn.Addr().String())
		run("rtmp", func() error { return rtmpSrv.Serve(rtmpLn) })
	}

	var httpSrv *http.Server
	var hs *httpstream.Server
	if httpLn != nil {
		hs, err = httpstream.New(httpstream.Config{Router: router, Sessions: node,
			Logger: log.With("proto", "http"), TokenSecret: segmentSecret(o)})
		if err != nil {
			return err
		}
		httpSrv = &http.Server{Handler: collector.httpS.wrap(hs.Handler()), ReadHeaderTimeout: 10 * time.Second}
		serveHTTP("http streaming", httpSrv, httpLn)
	}

	var srtSrv *srt.Server
	if srtPC != nil {
		srtSrv, err = srt.New(srt.Config{Router: router, Sessions: node, Logger: log.With("proto", "srt")})
		if err != nil {
			return err
		}
		log.Info("srt listening", "addr", srtPC.LocalAddr().String())
		run("srt", func() error { return srtSrv.Serve(srtPC) })
	}

	var rtcSrv *webrtc.Server
	if rtcPC != nil {
		rtcSrv, err = webrtc.New(webrtc.Config{Router: router, Store: newRTCStore(node), Sessions: node,
			Logger: log.With("proto", "webrtc"), Candidate: candidate})
		if err != nil {
			return err
		}
		log.Info("webrtc media listening", "addr", rtcPC.LocalAddr().String(), "candidate", candidate.String())
		run("webrtc", func() error { return rtcSrv.ServeUDP(rtcPC) })
	}

	var apiSrv *http.Server
	var srsAPI *api.Server
	if apiLn != nil {
		srsAPI, err = api.New(api.Config{Origins: apiOrigins{node}, NodeID: o.nodeID,
			Logger: log.With("proto", "api"), Version: version})
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("/api/", srsAPI.Handler())
		if rtcSrv != nil {
			mux.Handle("/rtc/", rtcSrv.Handler())
		}
		apiSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		serveHTTP("http api", apiSrv, apiLn)
	}

	collector.rtmp, collector.srt, collector.rtc = rtmpSrv, srtSrv, rtcSrv
	serveHTTP("system api", sysSrv, sysLn)

	var fatal error
	select {
	case <-ctx.Done():
		log.Info("shutting down: refusing new clients, draining sessions", "drain_timeout", o.drainTimeout)
	case fatal = <-serveErr:
		log.Error("listener failed", "err", fatal)
	}

	// Drain: fail readiness, stop accepting, let live sessions finish within
	// the drain timeout, then leave the mesh.
	draining.Store(true)
	drainCtx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
	defer cancel()
	if fatal != nil {
		cancel()
	}
	if rtmpLn != nil {
		rtmpLn.Close()
	}
	var dwg sync.WaitGroup
	for _, srv := range []*http.Server{httpSrv, apiSrv} {
		if srv != nil {
			dwg.Add(1)
			go func() { defer dwg.Done(); srv.Shutdown(drainCtx) }()
		}
	}
	// UDP protocols have no listener to close: they keep serving, and the
	// drain waits for their sessions too.
	waitIdle(drainCtx, func() bool {
		return (rtmpSrv == nil || rtmpSrv.Stats().ConnsOpen == 0) &&
			(srtSrv == nil || srtSrv.Stats().Established == 0) &&
			(rtcSrv == nil || rtcSrv.Stats().Sessions == 0)
	})
	dwg.Wait()
	if hs != nil {
		hs.Close()
	}
	if rtmpSrv != nil {
		rtmpSrv.Close()
	}
	if srtSrv != nil {
		srtSrv.Close()
	}
	if rtcSrv != nil {
		rtcSrv.Close()
	}
	if srsAPI != nil {
		srsAPI.Close()
	}
	leaveCtx, cancelLeave := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelLeave()
	if err := node.Leave(leaveCtx); err != nil {
		log.Warn("leaving the mesh", "err", err)
	}
	sysSrv.Shutdown(leaveCtx)
	node.Close()
	wg.Wait()
	log.Info("stopped")
	return fatal
}

// waitIdle polls idle every 100 ms until it is true or ctx ends.
func waitIdle(ctx context.Context, idle func() bool) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for !idle() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// systemHandler is the system API: the mesh's routes, /metrics, and the
// dashboard at /, with readiness failing while the node drains.
func systemHandler(node *mesh.Node, draining *atomic.Bool, metrics http.Handler) http.Handler {
	meshAPI := node.Handler()
	mux := http.NewServeMux()
	mux.Handle("/api/", meshAPI)
	mux.Handle("/mesh/", meshAPI)
	mux.Handle("/healthz", meshAPI)
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"code":503,"message":"node is draining"}` + "\n"))
			return
		}
		meshAPI.ServeHTTP(w, r)
	})
	mux.Handle("/metrics", metrics)
	mux.Handle("/", dashboard.Handler())
	return mux
}

// listeners opens the client and system listeners; an empty address
// disables one (nil is returned). closeAll closes whatever is still open.
type listeners struct {
	closers []interface{ Close() error }
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

// rtcCandidate is the address announced in WebRTC answers: --rtc-candidate
// (an IP, or IP:port) or the advertise address, with the --rtc port.
func rtcCandidate(flag, advertise, rtcAddr string) (netip.AddrPort, error) {
	_, portStr, err := net.SplitHostPort(rtcAddr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--rtc: %w", err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--rtc: bad port %q", portStr)
	}
	host := advertise
	if flag != "" {
		if ap, err := netip.ParseAddrPort(flag); err == nil {
			return ap, nil
		}
		host = flag
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--rtc-candidate: %q is not an IP address", host)
	}
	return netip.AddrPortFrom(ip, uint16(port)), nil
}

// defaultAdvertiseIP picks the address other nodes use for this one: the
// gossip bind IP when it is specific, else the first non-loopback unicast
// address of the host, else 127.0.0.1.
func defaultAdvertiseIP(gossipAddr string) string {
	if host, _, err := net.SplitHostPort(gossipAddr); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			return ip.String()
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && n.IP.IsGlobalUnicast() {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}
