package main

import (
	"testing"

	"github.com/srs-mesh/srs-mesh/mesh/streams"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp"
)

// TestStandbyProtocolAgrees: the RTMP server reports standby publishers
// under the protocol the stream list counts them by.
func TestStandbyProtocolAgrees(t *testing.T) {
	if rtmp.ProtoStandby != streams.ProtoStandby {
		t.Fatalf("rtmp reports standbys as %q, the stream list counts %q", rtmp.ProtoStandby, streams.ProtoStandby)
	}
}

func TestStandbysText(t *testing.T) {
	for _, tt := range []struct {
		in   map[string]int
		want string
	}{{nil, ""}, {map[string]int{"n1": 0}, ""}, {map[string]int{"n3": 1}, " +1 standby"}, {map[string]int{"n1": 1, "n3": 1}, " +2 standby"}} {
		if got := standbysText(tt.in); got != tt.want {
			t.Errorf("standbysText(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
