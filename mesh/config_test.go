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
	for _, c := range []Config{
		{DataDir: dir},
		{NodeID: "n"},
		{NodeID: "n", DataDir: dir, GossipKey: []byte("short")},
		{NodeID: "n", DataDir: dir, ProbeInterval: -1},
		{NodeID: "n", DataDir: dir, AdvertiseAddr: netip.IPv4Unspecified()},
		{NodeID: "n", DataDir: dir, BootstrapExpect: -1},
		{NodeID: "n", DataDir: dir, MaxRTCSessions: -1},
		{NodeID: "n", DataDir: dir, MaxRTCSessions: 100_001},
		{NodeID: "n", DataDir: dir, RTCActiveWindow: 9 * time.Second},
		{NodeID: "n", DataDir: dir, RTCActiveWindow: time.Minute, RTCTouchInterval: 31 * time.Second},
	} {
		if _, err := New(c); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", c, err)
		}
	}
	cfg, err := Config{NodeID: "n", DataDir: dir, RaftAddr: netip.MustParseAddrPort("127.0.0.1:7000")}.withDefaults()
	if err != nil || cfg.AdvertiseAddr != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("specific bind advertises itself: %q %v", cfg.AdvertiseAddr, err)
	}
	if cfg.MaxRTCSessions != 100_000 || cfg.RTCActiveWindow != time.Minute || cfg.RTCTouchInterval != 5*time.Second {
		t.Fatalf("rtc defaults: %d %v %v", cfg.MaxRTCSessions, cfg.RTCActiveWindow, cfg.RTCTouchInterval)
	}
}
