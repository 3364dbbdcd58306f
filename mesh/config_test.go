package mesh

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestDefaultsDetectDeadOriginWithinFiveSeconds(t *testing.T) {
	cfg, err := Config{NodeID: "n", DataDir: t.TempDir()}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if b := cfg.unhealthyBound(); b >= 5*time.Second {
		t.Fatalf("worst case to mark a dead origin unhealthy with defaults = %v, want < 5s", b)
	}
	if cfg.probeTimeout() > cfg.ProbeInterval {
		t.Fatalf("probe timeout %v longer than the interval %v", cfg.probeTimeout(), cfg.ProbeInterval)
	}
	if cfg.BootstrapExpect != 1 || cfg.RouteTimeout != 3*time.Second || cfg.AssignmentTTL != 10*time.Minute || cfg.ReapTimeout != 30*time.Second {
		t.Fatalf("defaults: %+v", cfg)
	}
}

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		field string
		cfg   Config
	}{
		{"NodeID", Config{DataDir: dir}},
		{"NodeID", Config{NodeID: " ", DataDir: dir}},
		{"DataDir", Config{NodeID: "n"}},
		{"GossipKey", Config{NodeID: "n", DataDir: dir, GossipKey: []byte("short")}},
		{"ProbeInterval", Config{NodeID: "n", DataDir: dir, ProbeInterval: -1}},
		{"AdvertiseAddr", Config{NodeID: "n", DataDir: dir, AdvertiseAddr: netip.IPv4Unspecified()}},
		{"BootstrapExpect", Config{NodeID: "n", DataDir: dir, BootstrapExpect: -1}},
		{"RaftVoters", Config{NodeID: "n", DataDir: dir, RaftVoters: 4}},
		{"Zone", Config{NodeID: "n", DataDir: dir, Zone: "eu west"}},
		{"MaxOrigins", Config{NodeID: "n", DataDir: dir, MaxOrigins: -1}},
		{"MaxRTCSessions", Config{NodeID: "n", DataDir: dir, MaxRTCSessions: -1}},
		{"MaxRTCSessions", Config{NodeID: "n", DataDir: dir, MaxRTCSessions: 100_001}},
		{"RTCActiveWindow", Config{NodeID: "n", DataDir: dir, RTCActiveWindow: 9 * time.Second}},
		{"RTCActiveWindow", Config{NodeID: "n", DataDir: dir, RTCActiveWindow: time.Minute, RTCTouchInterval: 31 * time.Second}},
	} {
		_, err := New(tc.cfg)
		var ce *ConfigError
		if !errors.Is(err, ErrConfig) || !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("New(%+v) = %v, want a ConfigError of %s", tc.cfg, err, tc.field)
		}
	}
	// Validate checks a config as it stands: zero counts and durations are
	// errors, not defaults.
	d := DefaultConfig()
	d.NodeID, d.DataDir = "n", dir
	if err := d.Validate(); err != nil {
		t.Fatalf("DefaultConfig with an id and a directory: %v", err)
	}
	d.ReapTimeout = 0
	var ce *ConfigError
	if err := d.Validate(); !errors.As(err, &ce) || ce.Field != "ReapTimeout" || err.Error() != "mesh: bad config: ReapTimeout must be positive, got 0s" {
		t.Fatalf("zero ReapTimeout: %v", err)
	}
	cfg, err := Config{NodeID: "n", DataDir: dir, RaftAddr: netip.MustParseAddrPort("127.0.0.1:7000")}.withDefaults()
	if err != nil || cfg.AdvertiseAddr != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("specific bind advertises itself: %q %v", cfg.AdvertiseAddr, err)
	}
	if cfg.MaxRTCSessions != 100_000 || cfg.RTCActiveWindow != time.Minute || cfg.RTCTouchInterval != 5*time.Second {
		t.Fatalf("rtc defaults: %d %v %v", cfg.MaxRTCSessions, cfg.RTCActiveWindow, cfg.RTCTouchInterval)
	}
}
