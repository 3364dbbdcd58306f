package main

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
)

// serveErr runs `srs-mesh serve` with args on loopback, listeners off, and
// returns its error; a run that starts a node ends within 10s.
func serveErr(t *testing.T, args ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	root := newRootCmd()
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	root.SetArgs(append([]string{"serve", "--node-id", "n1", "--data-dir", t.TempDir(), "--log-level", "error",
		"--rtmp", "", "--http", "", "--api", "", "--rtc", "", "--srt", "", "--system-api", "127.0.0.1:0"}, args...))
	return root.ExecuteContext(ctx)
}

// A flag that breaks a rule of mesh.Config is named in the error, which
// comes from the one place that checks the rule.
func TestServeFlagErrorsNameTheFlag(t *testing.T) {
	short := base64.StdEncoding.EncodeToString([]byte("short"))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--node-id", " "}, "--node-id is required"},
		{[]string{"--bootstrap-expect", "0"}, "--bootstrap-expect must be at least 1, got 0"},
		{[]string{"--raft-voters", "4"}, "--raft-voters must be a positive odd number, got 4"},
		{[]string{"--zone", "eu west"}, `--zone must be at most 64 bytes without spaces, got "eu west"`},
		{[]string{"--reap-timeout", "0"}, "--reap-timeout must be positive, got 0s"},
		{[]string{"--history-interval", "-1s"}, "--history-interval must be positive, got -1s"},
		{[]string{"--origin-timeout", "-1s"}, "--origin-timeout must be positive, got -1s"},
		{[]string{"--max-origins", "0"}, "--max-origins must be at least 1, got 0"},
		{[]string{"--gossip-key", short}, "--gossip-key must be 16, 24 or 32 bytes, got 5"},
		{[]string{"--gossip-key", "!!"}, "--gossip-key: not base64: illegal base64 data at input byte 0"},
		{[]string{"--insecure", "--gossip-addr", "nope"}, "--gossip-addr: address nope: missing port in address"},
		{[]string{"--raft-addr", "localhost:7947"}, `--raft-addr: "localhost" is not an IP address`},
		{[]string{"--raft-addr", "127.0.0.1:99999"}, `--raft-addr: bad port "99999"`},
		{[]string{"--advertise-addr", "0.0.0.0"}, "--advertise-addr must be a specific IP, got 0.0.0.0"},
		{[]string{"--advertise-addr", "node1"}, `--advertise-addr: "node1" is not an IP address`},
	} {
		err := serveErr(t, tc.args...)
		if err == nil || err.Error() != tc.want {
			t.Errorf("serve %v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// The address flags are parsed once into the mesh's netip types: ":port"
// binds every interface, and the defaults depend on a lone node.
func TestBuildMeshConfigAddresses(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	d := mesh.DefaultConfig()
	o := serveOptions{nodeID: "n1", dataDir: t.TempDir(), bootstrapExpect: d.BootstrapExpect, raftVoters: d.RaftVoters,
		reapTimeout: d.ReapTimeout, originTimeout: d.OriginTimeout, historyInterval: d.HistoryInterval,
		originTTL: d.OriginTTL, maxOrigins: d.MaxOrigins, streamReplicas: d.StreamReplicas, moveTimeout: d.MoveTimeout}

	lone := o
	resolveAddrs(&lone)
	cfg, err := buildMeshConfig(lone, log)
	if err != nil {
		t.Fatal(err)
	}
	loop := netip.MustParseAddr("127.0.0.1")
	if cfg.GossipAddr != netip.AddrPortFrom(loop, mesh.DefaultGossipPort) || cfg.RaftAddr != netip.AddrPortFrom(loop, mesh.DefaultRaftPort) ||
		cfg.AdvertiseAddr != loop || cfg.APIAddr != netip.MustParseAddrPort("127.0.0.1:12025") {
		t.Fatalf("lone node: gossip %v raft %v advertise %v api %v", cfg.GossipAddr, cfg.RaftAddr, cfg.AdvertiseAddr, cfg.APIAddr)
	}

	joining := o
	joining.join = []string{"peer:7946"}
	resolveAddrs(&joining)
	if cfg, err = buildMeshConfig(joining, log); err != nil {
		t.Fatal(err)
	}
	if cfg.GossipAddr != d.GossipAddr || cfg.RaftAddr != d.RaftAddr {
		t.Fatalf("joining node: gossip %v raft %v, want %v %v", cfg.GossipAddr, cfg.RaftAddr, d.GossipAddr, d.RaftAddr)
	}

	ports := o
	ports.gossipAddr, ports.raftAddr, ports.advertiseAddr, ports.systemAPI = ":7000", "[::1]:7001", "10.0.0.5", ":9000"
	if cfg, err = buildMeshConfig(ports, log); err != nil {
		t.Fatal(err)
	}
	if cfg.GossipAddr != netip.MustParseAddrPort("0.0.0.0:7000") || cfg.RaftAddr != netip.MustParseAddrPort("[::1]:7001") ||
		cfg.AdvertiseAddr != netip.MustParseAddr("10.0.0.5") || cfg.APIAddr != netip.MustParseAddrPort("10.0.0.5:9000") {
		t.Fatalf("explicit: gossip %v raft %v advertise %v api %v", cfg.GossipAddr, cfg.RaftAddr, cfg.AdvertiseAddr, cfg.APIAddr)
	}
}

// The serve flags that set a mesh.Config field default to the mesh's own
// defaults, and --help shows them.
func TestServeFlagDefaultsAreTheMeshDefaults(t *testing.T) {
	d := mesh.DefaultConfig()
	fs := newServeCmd().Flags()
	for flag, want := range map[string]string{
		"bootstrap-expect": strconv.Itoa(d.BootstrapExpect),
		"raft-voters":      strconv.Itoa(d.RaftVoters),
		"max-origins":      strconv.Itoa(d.MaxOrigins),
		"reap-timeout":     d.ReapTimeout.String(),
		"history-interval": d.HistoryInterval.String(),
		"origin-timeout":   d.OriginTimeout.String(),
		"origin-ttl":       d.OriginTTL.String(),
	} {
		if got := fs.Lookup(flag).DefValue; got != want {
			t.Errorf("--%s defaults to %s, want the mesh's %s", flag, got, want)
		}
	}
	var help strings.Builder
	cmd := newServeCmd()
	cmd.SetOut(&help)
	cmd.SetArgs([]string{"--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--raft-voters int", "(default 5)", "else " + d.GossipAddr.String() + ")", "else " + d.RaftAddr.String() + ")"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("serve --help lacks %q", want)
		}
	}
}
