package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/mesh/clustertls"
	"github.com/srs-mesh/srs-mesh/protocols/httpstream"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp"
	"github.com/srs-mesh/srs-mesh/protocols/webrtc"
	"github.com/srs-mesh/srs-mesh/protocols/webrtc/sfu"
)

// serveOptions are the raw values of the serve flags.
type serveOptions struct {
	nodeID          string
	dataDir         string
	bootstrapExpect int
	raftVoters      int
	zone            string
	reapTimeout     time.Duration
	join            []string
	gossipAddr      string
	raftAddr        string
	advertiseAddr   string
	systemAPI       string
	rtmpAddr        string
	httpAddr        string
	apiAddr         string
	// httpsAddr, apiHTTPSAddr and rtmpsAddr serve what --http, --api and
	// --rtmp serve, over TLS with the certificate of httpsCertFile and
	// httpsKeyFile.
	httpsAddr        string
	rtmpsAddr        string
	configFile       string
	apiHTTPSAddr     string
	httpsCertFile    string
	httpsKeyFile     string
	rtcAddr          string
	rtcCandidate     string
	rtcOfferRate     float64
	rtcOfferBurst    int
	rtcFanOut        bool
	rtcMaxViewers    int
	rtcStreamViewers int
	rtcTCPAddr       string
	rtcTCPCandidate  string
	rtcViewerMbps    float64
	srtAddr          string
	udpBuffer        byteSize
	origins          originList
	originTokenFile  string
	originAuthFile   string
	originTimeout    time.Duration
	historyInterval  time.Duration
	originTTL        time.Duration
	maxOrigins       int
	streamReplicas   int
	replicaRules     []string
	moveTimeout      time.Duration
	originAllow      []string
	drainTimeout     time.Duration
	httpReadTimeout  time.Duration
	httpIdleTimeout  time.Duration
	maxHTTPConns     int
	maxRTMPConns     int
	trustedProxies   []string
	forwardedHeader  string
	proxyProtocol    []string
	cacheSize        byteSize
	playlistTTL      time.Duration
	fanOut           bool
	reattach         time.Duration
	publishGrace     time.Duration
	backupPublish    bool
	publishStall     time.Duration
	rtmpMaxMessage   byteSize
	token            string
	gossipKey        string
	tlsCAFile        string
	tlsCertFile      string
	tlsKeyFile       string
	insecure         bool
	logLevel         string
	logFormat        string
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
take a comma-separated list (--origin: separated by ';', as one --origin
value may also be). --config FILE reads flags from a YAML file keyed by flag
name; the command line and the environment override it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags(), os.LookupEnv); err != nil {
				return err
			}
			if o.configFile != "" {
				if err := applyConfigFile(cmd.Flags(), o.configFile); err != nil {
					return err
				}
			}
			if o.nodeID == "" {
				o.nodeID, _ = os.Hostname()
			}
			return runServe(cmd.Context(), o)
		},
	}
	d := mesh.DefaultConfig()
	f := cmd.Flags()
	f.StringVar(&o.nodeID, "node-id", "", "unique id of this node, kept across restarts (default: this host's name)")
	f.StringVar(&o.dataDir, "data-dir", "./srs-mesh-data", "directory for the Raft log and snapshots")
	f.IntVar(&o.bootstrapExpect, "bootstrap-expect", d.BootstrapExpect, "number of nodes that form a new cluster together")
	f.IntVar(&o.raftVoters, "raft-voters", d.RaftVoters, "most Raft voters (odd); other nodes join as non-voters that replicate the state and route locally")
	f.StringVar(&o.zone, "zone", "", "failure domain of this node (e.g. the Kubernetes topology zone); voters are spread over distinct zones")
	f.DurationVar(&o.reapTimeout, "reap-timeout", d.ReapTimeout, "how long a failed node stays in the Raft configuration before the leader replaces (voter) or removes it")
	f.StringSliceVar(&o.join, "join", nil, "gossip address (host:port) of another node; repeatable; DNS names are retried until they resolve")
	f.StringVar(&o.gossipAddr, "gossip-addr", "", fmt.Sprintf("gossip bind address (ip:port or :port), tcp and udp (default: 127.0.0.1:%d for a lone node with no --join and --bootstrap-expect 1, else %v)", d.GossipAddr.Port(), d.GossipAddr))
	f.StringVar(&o.raftAddr, "raft-addr", "", fmt.Sprintf("cluster port (ip:port or :port): Raft and node-to-node HTTP (default: 127.0.0.1:%d for a lone node, else %v)", d.RaftAddr.Port(), d.RaftAddr))
	f.StringVar(&o.advertiseAddr, "advertise-addr", "", "IP address other nodes use for this node (default: the bind address if specific, else the first non-loopback address)")
	f.StringVar(&o.systemAPI, "system-api", "", "system API address: origin registration, cluster API, metrics (default: :12025 with --token, else 127.0.0.1:12025)")
	f.StringVar(&o.rtmpAddr, "rtmp", ":1935", "RTMP listen address (empty disables)")
	f.StringVar(&o.httpAddr, "http", ":8080", "HTTP streaming listen address: HTTP-FLV, HTTP-TS, HLS, DASH (empty disables)")
	f.StringVar(&o.apiAddr, "api", ":1985", "HTTP API listen address: SRS API and WebRTC signalling (empty disables)")
	f.StringVar(&o.httpsAddr, "https", "", "HTTPS streaming listen address, e.g. :8088 (SRS's): what --http serves, over TLS, for players on HTTPS pages (empty disables); needs --https-cert-file and --https-key-file")
	f.StringVar(&o.apiHTTPSAddr, "api-https", "", "HTTPS API listen address, e.g. :1990 (SRS's): what --api serves (WHIP, WHEP, SRS's API), over TLS (empty disables); its writes follow the rules of --api for its own address")
	f.StringVar(&o.rtmpsAddr, "rtmps", "", "RTMPS listen address, e.g. :1936: what --rtmp serves, over TLS, with the certificate of --https-cert-file (empty disables)")
	f.StringVar(&o.httpsCertFile, "https-cert-file", "", "PEM certificate (with its chain) of --https, --api-https and --rtmps; read again when it changes, so a rotation needs no restart")
	f.StringVar(&o.httpsKeyFile, "https-key-file", "", "PEM key of --https-cert-file; read again when it changes")
	f.StringVar(&o.rtcAddr, "rtc", ":8000", "WebRTC media UDP address (empty disables)")
	f.StringVar(&o.rtcCandidate, "rtc-candidate", "", "IP (or IP:port) announced in WebRTC candidates (default: the advertise address with the --rtc port)")
	f.Float64Var(&o.rtcOfferRate, "rtc-offer-rate", webrtc.DefaultOfferRate, "WebRTC offers (WHIP, WHEP, SRS's publish and play) per second one client address may make on average; more get 429 (0: no limit)")
	f.IntVar(&o.rtcOfferBurst, "rtc-offer-burst", webrtc.DefaultOfferBurst, "WebRTC offers one client address may make at once, above --rtc-offer-rate")
	f.BoolVar(&o.rtcFanOut, "rtc-fanout", true, "answer WebRTC viewers (WHEP, SRS's /rtc/v1/play/) at the node, on the --rtc port, from one upstream per stream and query (false: relay each viewer to the origin; publishers are relayed either way)")
	f.IntVar(&o.rtcMaxViewers, "rtc-max-viewers", sfu.DefaultMaxViewers, "WebRTC viewers one node serves at most with --rtc-fanout; more get 503")
	f.IntVar(&o.rtcStreamViewers, "rtc-max-stream-viewers", sfu.DefaultMaxViewersPerStream, "WebRTC viewers of one stream one node serves at most with --rtc-fanout; more get 503")
	f.StringVar(&o.rtcTCPAddr, "rtc-tcp", "", "ICE-TCP listen address for WebRTC viewers whose networks block UDP, e.g. :8000 (TCP may share the --rtc port number; needs --rtc-fanout; empty disables)")
	f.StringVar(&o.rtcTCPCandidate, "rtc-tcp-candidate", "", "port (or IP:port) announced in WebRTC viewers' TCP candidates (default: the --rtc-candidate IP with the --rtc-tcp port)")
	f.Float64Var(&o.rtcViewerMbps, "rtc-viewer-bitrate", float64(sfu.DefaultViewerBitrate)/1e6, "Mbit/s one WebRTC viewer is sent at most with --rtc-fanout, retransmissions included; a viewer beyond it skips to the next keyframe, then is disconnected (0: no cap)")
	f.StringVar(&o.srtAddr, "srt", ":10080", "SRT UDP address (empty disables)")
	o.udpBuffer = defaultUDPBuffer
	f.Var(&o.udpBuffer, "udp-buffer", "receive and send buffer of each SRT and WebRTC relay socket, e.g. 4MiB (0: the system default); the kernel caps it at net.core.rmem_max and net.core.wmem_max, and the node logs a warning when it got less")
	f.Var(&o.origins, "origin", "static origin, e.g. id=o1,ip=10.0.0.5,rtmp=1935,http=8080,api=1985,srt=10080,rtc=8000 (id, ip and a port required; add api-token=, api-token-file=, api-auth=user:password or api-auth-file= for an origin whose HTTP API needs credentials: the SRS API's reads then need --token, and a credential holding ',' or ';' belongs in a file); repeatable, and ';' separates origins in one value")
	f.StringVar(&o.originTokenFile, "origin-api-token-file", "", "file holding the bearer token sent to every origin's HTTP API that has no credentials of its own in --origin (registered origins included), for SRS 8's http_api.auth; the SRS API's reads then need --token")
	f.StringVar(&o.originAuthFile, "origin-api-auth-file", "", "file holding user:password sent as Basic auth to every origin's HTTP API that has no credentials of its own in --origin (registered origins included), for SRS's http_api.auth; the SRS API's reads then need --token")
	f.DurationVar(&o.historyInterval, "history-interval", d.HistoryInterval, "how often the node samples its throughput and sessions for the dashboard's charts (it keeps 180 samples) and each stream's bit rates")
	f.DurationVar(&o.originTimeout, "origin-timeout", d.OriginTimeout, "how long an origin may fail probes and miss heartbeats before it is unhealthy")
	f.DurationVar(&o.originTTL, "origin-ttl", d.OriginTTL, "how long a registered origin stays known after its last heartbeat (static origins stay)")
	f.IntVar(&o.maxOrigins, "max-origins", d.MaxOrigins, "most origins the mesh knows; registrations of new ones beyond it are refused")
	f.IntVar(&o.streamReplicas, "stream-replicas", d.StreamReplicas, "live copies of each published stream on origins: 2 adds a warm replica, fed by the publisher's node, that takes over without a re-publish when the primary origin fails")
	f.StringSliceVar(&o.replicaRules, "stream-replicas-for", nil, "PATTERN=N: live copies for the streams whose app/stream matches PATTERN (path.Match syntax, e.g. events/*=2); repeatable, the first match wins over --stream-replicas")
	f.DurationVar(&o.moveTimeout, "move-timeout", d.MoveTimeout, "how long a make-before-break move (drain --move) may take before the stream moves the way a failover moves it")
	f.StringSliceVar(&o.originAllow, "origin-allow", nil, "CIDR that every address of a registered origin must fall in; repeatable (default: any, except link-local, multicast and unspecified)")
	f.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "on shutdown, how long existing sessions may keep running")
	f.DurationVar(&o.httpReadTimeout, "http-read-timeout", 10*time.Second, "on the HTTP ports (--http, --api, --system-api), how long a request's headers and body may take to arrive; responses are not bounded (0: no limit, headers still within 10s)")
	f.DurationVar(&o.httpIdleTimeout, "http-idle-timeout", 60*time.Second, "on the HTTP ports, how long a keep-alive connection may wait for its next request (0: no limit)")
	f.IntVar(&o.maxHTTPConns, "max-http-conns", 10000, "connections open at once on each HTTP port; more are answered 503 and closed (0: no cap)")
	f.IntVar(&o.maxRTMPConns, "max-rtmp-conns", rtmp.DefaultMaxConns, "RTMP client connections open at once (publishers and players, --rtmp and --rtmps together); more are closed at once and counted (srs_mesh_session_failures_total{proto=\"rtmp\",reason=\"too_many_connections\"})")
	f.StringSliceVar(&o.trustedProxies, "trusted-proxies", nil, "CIDR (or IP) of load balancers and reverse proxies whose client address is believed: their --forwarded-header on --http and --api, their PROXY protocol header on the --proxy-protocol listeners; repeatable (default: nobody; every client is its TCP peer)")
	f.StringVar(&o.forwardedHeader, "forwarded-header", "X-Forwarded-For", "header that --trusted-proxies write on the HTTP ports: X-Forwarded-For or Forwarded (RFC 7239); the client is its rightmost address that is not a trusted proxy, and the other header is ignored")
	f.StringSliceVar(&o.proxyProtocol, "proxy-protocol", nil, "listeners (rtmp, http, api, https, api-https, rtmps) whose --trusted-proxies peers must start every connection with a PROXY protocol header (v1 or v2) within 5s; a PROXY header from any other peer is refused; repeatable")
	o.cacheSize = httpstream.DefaultCacheBytes
	f.Var(&o.cacheSize, "cache-size", "memory for this node's cache of HLS and DASH segments, init sections and keys, e.g. 256MiB, 1GiB (0 disables)")
	f.DurationVar(&o.playlistTTL, "playlist-cache-ttl", 0, "how long this node reuses an origin's playlist or MPD for requests with the same path and query (0: half the target duration, half the MPD's minimumUpdatePeriod, else 1s; negative disables)")
	o.rtmpMaxMessage = rtmp.DefaultMaxMessageSize
	f.Var(&o.rtmpMaxMessage, "rtmp-max-message", "largest RTMP message a client may send, e.g. 1MiB; a larger one is refused at the node (publishers get an error onStatus) and never reaches the origin. Keep it at or below what the origins accept (nginx-rtmp's max_message, 1M by default); at most 16MiB-1")
	f.BoolVar(&o.fanOut, "fanout", true, "serve RTMP and HTTP-FLV players of a stream from one upstream per node and query (false: one origin connection per player)")
	f.DurationVar(&o.reattach, "reattach-timeout", 10*time.Second, "how long players of a stream whose origin failed wait, connected, for the stream's new origin (0: they are disconnected at once; needs --fanout, or --rtc-fanout for WebRTC viewers)")
	f.BoolVar(&o.backupPublish, "backup-publish", true, "keep a second RTMP, SRT or WHIP publisher of a live stream as its standby (a backup encoder) rather than refusing it (stream busy); the standby publishes when the origin ends the stream, and players ride through with --publish-grace (false: the second publisher is refused; WHIP standbys need --rtc-fanout)")
	f.DurationVar(&o.publishStall, "publish-stall", 2*time.Second, "with --backup-publish, end an RTMP or SRT publish whose encoder sent no audio or video (SRT: no data packet) for this long, its connection open, so that a standby takes over (0: never)")
	f.DurationVar(&o.publishGrace, "publish-grace", 10*time.Second, "how long RTMP and HTTP-FLV players of a stream whose publisher stopped wait, connected and sent nothing, for a publisher to publish it again through any node; they then resume on the same sessions (0: they end at once; needs --fanout)")
	f.StringVar(&o.token, "token", "", "bearer token required by write endpoints (register, drain; on --api, every call but GET/HEAD/OPTIONS and every ?origin= call, which without a token are refused unless --api is on loopback or --insecure is given); also accepted as ?token=, and by register as the last path segment (/api/v1/srs/register/<token>)")
	f.StringVar(&o.gossipKey, "gossip-key", "", "base64 key (16, 24 or 32 bytes) that encrypts gossip")
	f.StringVar(&o.tlsCAFile, "tls-ca-file", "", "PEM CA certificate of the cluster's mutual TLS (Raft and node-to-node HTTP); srs-mesh tls makes one")
	f.StringVar(&o.tlsCertFile, "tls-cert-file", "", "PEM certificate of this node, signed by the CA, naming --node-id")
	f.StringVar(&o.tlsKeyFile, "tls-key-file", "", "PEM key of --tls-cert-file")
	f.BoolVar(&o.insecure, "insecure", false, "start even though cluster ports off loopback lack --gossip-key and TLS files, or a system API off loopback lacks --token; and take SRS API calls that can change an origin from anyone on an --api off loopback without --token (logs a warning)")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.configFile, "config", "", "YAML file of flag values, keyed by flag name (bootstrap-expect: 3); flags and SRS_MESH_* variables override it")
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
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: oneLineAttr}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: want text or json, got %q", format)
}

// oneLineAttr keeps every log value on one line: a string or error that
// spans lines (a joined error's "\n\t* ") is rejoined with "; ", so that a
// text log line stays one line and reads without escapes.
func oneLineAttr(_ []string, a slog.Attr) slog.Attr {
	var s string
	switch v := a.Value.Resolve(); {
	case v.Kind() == slog.KindString:
		s = v.String()
	case v.Kind() == slog.KindAny:
		err, ok := v.Any().(error)
		if !ok || err == nil {
			return a
		}
		s = err.Error()
	default:
		return a
	}
	if !strings.ContainsAny(s, "\n\r") {
		if a.Value.Kind() == slog.KindAny {
			a.Value = slog.StringValue(s)
		}
		return a
	}
	var parts []string
	for _, line := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }) {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "* "))
		if line != "" {
			parts = append(parts, line)
		}
	}
	a.Value = slog.StringValue(strings.ReplaceAll(strings.Join(parts, "; "), ":;", ":"))
	return a
}

// buildMeshConfig turns flags into a mesh.Config, parsing what needs it
// here and leaving the rules to mesh.Config.Validate, whose errors it
// restates with the flag's name (flagError).
func buildMeshConfig(o serveOptions, log *slog.Logger) (mesh.Config, error) {
	cfg := mesh.DefaultConfig()
	cfg.NodeID = o.nodeID
	cfg.DataDir = o.dataDir
	cfg.BootstrapExpect = o.bootstrapExpect
	cfg.RaftVoters = o.raftVoters
	cfg.Zone = o.zone
	cfg.ReapTimeout = o.reapTimeout
	cfg.Join = o.join
	cfg.OriginTimeout = o.originTimeout
	cfg.HistoryInterval = o.historyInterval
	cfg.OriginTTL = o.originTTL
	cfg.MaxOrigins = o.maxOrigins
	cfg.StreamReplicas = o.streamReplicas
	cfg.MoveTimeout = o.moveTimeout
	for _, r := range o.replicaRules {
		pat, n, ok := strings.Cut(r, "=")
		copies, err := strconv.Atoi(strings.TrimSpace(n))
		if !ok || err != nil {
			return cfg, fmt.Errorf("--stream-replicas-for %q: want PATTERN=N", r)
		}
		cfg.ReplicaRules = append(cfg.ReplicaRules, mesh.ReplicaRule{Pattern: strings.TrimSpace(pat), Replicas: copies})
	}
	cfg.Token = o.token
	cfg.Logger = log
	var err error
	if cfg.GossipAddr, err = parseBindAddr("--gossip-addr", o.gossipAddr); err != nil {
		return cfg, err
	}
	if cfg.RaftAddr, err = parseBindAddr("--raft-addr", o.raftAddr); err != nil {
		return cfg, err
	}
	if o.advertiseAddr != "" {
		if cfg.AdvertiseAddr, err = netip.ParseAddr(o.advertiseAddr); err != nil {
			return cfg, fmt.Errorf("--advertise-addr: %q is not an IP address", o.advertiseAddr)
		}
	} else {
		cfg.AdvertiseAddr = mesh.DefaultAdvertiseAddr(cfg.RaftAddr, cfg.GossipAddr)
	}
	// The system API address shown to other nodes: the advertise address
	// with the --system-api port.
	_, port, err := net.SplitHostPort(o.systemAPI)
	if err != nil {
		return cfg, fmt.Errorf("--system-api: %w", err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return cfg, fmt.Errorf("--system-api: bad port %q", port)
	}
	cfg.APIAddr = netip.AddrPortFrom(cfg.AdvertiseAddr, uint16(p))
	for _, c := range o.originAllow {
		p, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return cfg, fmt.Errorf("--origin-allow %q: %w", c, err)
		}
		cfg.OriginAllow = append(cfg.OriginAllow, p.Masked())
	}
	if o.gossipKey != "" {
		if cfg.GossipKey, err = base64.StdEncoding.DecodeString(o.gossipKey); err != nil {
			return cfg, fmt.Errorf("--gossip-key: not base64: %w", err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, flagError(err)
	}
	if o.tlsCAFile != "" || o.tlsCertFile != "" || o.tlsKeyFile != "" {
		if o.tlsCAFile == "" || o.tlsCertFile == "" || o.tlsKeyFile == "" {
			return cfg, errors.New("--tls-ca-file, --tls-cert-file and --tls-key-file go together")
		}
		tc, err := clustertls.Load(o.tlsCAFile, o.tlsCertFile, o.tlsKeyFile)
		if err != nil {
			return cfg, err
		}
		if !slices.Contains(tc.Names, o.nodeID) {
			log.Warn("the certificate of --tls-cert-file does not name --node-id, so other nodes take it as a member certificate only; `srs-mesh tls cert --node-id` makes one that does",
				"node_id", o.nodeID, "certificate_names", tc.Names)
		}
		cfg.TLS = tc
	}
	return cfg, nil
}

// flagError restates a mesh.ConfigError in terms of the serve flag that
// sets the field ("--raft-voters must be a positive odd number, got 4");
// other errors are returned as they are.
func flagError(err error) error {
	var ce *mesh.ConfigError
	if errors.As(err, &ce) {
		if f := meshFlag(ce.Field); f != "" {
			return fmt.Errorf("%s %s", f, ce.Problem)
		}
	}
	return err
}

// meshFlag names the serve flag that sets a mesh.Config field, or "" when
// no flag does.
func meshFlag(field string) string {
	switch field {
	case "NodeID":
		return "--node-id"
	case "DataDir":
		return "--data-dir"
	case "BootstrapExpect":
		return "--bootstrap-expect"
	case "RaftVoters":
		return "--raft-voters"
	case "StreamReplicas":
		return "--stream-replicas"
	case "ReplicaRules":
		return "--stream-replicas-for"
	case "MoveTimeout":
		return "--move-timeout"
	case "Zone":
		return "--zone"
	case "ReapTimeout":
		return "--reap-timeout"
	case "GossipAddr":
		return "--gossip-addr"
	case "RaftAddr":
		return "--raft-addr"
	case "AdvertiseAddr":
		return "--advertise-addr"
	case "OriginTimeout":
		return "--origin-timeout"
	case "HistoryInterval":
		return "--history-interval"
	case "OriginTTL":
		return "--origin-ttl"
	case "MaxOrigins":
		return "--max-origins"
	case "GossipKey":
		return "--gossip-key"
	case "StaticOrigins":
		return "--origin"
	}
	return ""
}

// parseBindAddr parses the bind address of a flag: "ip:port", or ":port"
// for every IPv4 interface. Host names are refused: the mesh binds and
// advertises IPs.
func parseBindAddr(flag, s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%s: %w", flag, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%s: bad port %q", flag, port)
	}
	ip := netip.IPv4Unspecified()
	if host != "" {
		if ip, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, fmt.Errorf("%s: %q is not an IP address", flag, host)
		}
	}
	return netip.AddrPortFrom(ip, uint16(p)), nil
}

// rtcOfferLimit is the per-client offer limit of the WebRTC signalling
// (webrtc.Config's OfferRate and OfferBurst) set by --rtc-offer-rate and
// --rtc-offer-burst: a rate of 0 disables it.
func rtcOfferLimit(o serveOptions) (perSecond float64, burst int, err error) {
	switch {
	case o.rtcOfferRate < 0 || math.IsNaN(o.rtcOfferRate) || math.IsInf(o.rtcOfferRate, 0):
		return 0, 0, fmt.Errorf("--rtc-offer-rate must be a finite number, 0 or more, got %v", o.rtcOfferRate)
	case o.rtcOfferBurst < 1:
		return 0, 0, fmt.Errorf("--rtc-offer-burst must be at least 1, got %d", o.rtcOfferBurst)
	case o.rtcOfferRate == 0:
		return -1, o.rtcOfferBurst, nil
	}
	return o.rtcOfferRate, o.rtcOfferBurst, nil
}

// rtcCandidate is the address announced in WebRTC answers: --rtc-candidate
// (an IP, or IP:port) or the advertise address, with the --rtc port.
func rtcCandidate(flag string, advertise netip.Addr, rtcAddr string) (netip.AddrPort, error) {
	_, portStr, err := net.SplitHostPort(rtcAddr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--rtc: %w", err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--rtc: bad port %q", portStr)
	}
	ip := advertise
	if flag != "" {
		if ap, err := netip.ParseAddrPort(flag); err == nil {
			return ap, nil
		}
		if ip, err = netip.ParseAddr(flag); err != nil {
			return netip.AddrPort{}, fmt.Errorf("--rtc-candidate: %q is not an IP address", flag)
		}
	}
	return netip.AddrPortFrom(ip, uint16(port)), nil
}

// rtcTCPCandidate is the address announced in viewers' TCP candidates:
// --rtc-tcp-candidate (a port, or IP:port), by default the UDP
// candidate's IP and the --rtc-tcp listener's port.
func rtcTCPCandidate(flag string, udp netip.AddrPort, ln net.Listener) (netip.AddrPort, error) {
	ta, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("--rtc-tcp: not a TCP listener: %v", ln.Addr())
	}
	if flag == "" {
		return netip.AddrPortFrom(udp.Addr(), uint16(ta.Port)), nil
	}
	if ap, err := netip.ParseAddrPort(flag); err == nil {
		return ap, nil
	}
	port, err := strconv.ParseUint(flag, 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}, fmt.Errorf("--rtc-tcp-candidate: %q is neither a port nor IP:port", flag)
	}
	return netip.AddrPortFrom(udp.Addr(), uint16(port)), nil
}

// defaultUDPBuffer is --udp-buffer's default: about 0.7 s of a 48 Mbit/s
// contribution feed, where the usual 208 KiB default holds 35 ms.
const defaultUDPBuffer = 4 << 20

// udpBuffer is srt.Config.SocketBuffer and webrtc.Config.SocketBuffer for
// --udp-buffer: at most 1GiB.
func udpBuffer(o serveOptions) (int, error) {
	if o.udpBuffer < 0 || o.udpBuffer > 1<<30 {
		return 0, fmt.Errorf("--udp-buffer: %s is outside 0..1GiB", o.udpBuffer.String())
	}
	return int(o.udpBuffer), nil
}

// rtmpMaxMessage is rtmp.Config.MaxMessageSize for --rtmp-max-message:
// from 1 byte to RTMP's 24-bit message length.
func rtmpMaxMessage(o serveOptions) (uint32, error) {
	if o.rtmpMaxMessage < 1 || o.rtmpMaxMessage > 0xffffff {
		return 0, fmt.Errorf("--rtmp-max-message: %s is outside 1B..16MiB-1 (RTMP's 24-bit message length)", o.rtmpMaxMessage.String())
	}
	return uint32(o.rtmpMaxMessage), nil
}

// byteSize is a flag value in bytes: a whole number with an optional unit,
// B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers of
// 1000), case-insensitive ("256MiB", "1gib", "500MB", "1048576").
type byteSize int64

var sizeUnits = []struct {
	name string
	mult int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1},
}

func (b *byteSize) Set(s string) error {
	v := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(v, strings.ToLower(u.name)); ok {
			v, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || (n > 0 && mult > (1<<62)/n) {
		return fmt.Errorf("want a size such as 256MiB, got %q", s)
	}
	*b = byteSize(n * mult)
	return nil
}

// String writes the size in the largest binary unit that divides it.
func (b *byteSize) String() string {
	n := int64(*b)
	for _, u := range sizeUnits[:4] {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}

func (b *byteSize) Type() string { return "size" }

// cacheBytes is httpstream.Config.CacheBytes for the size: 0 disables the
// cache.
func (b byteSize) cacheBytes() int64 {
	if b == 0 {
		return -1
	}
	return int64(b)
}
