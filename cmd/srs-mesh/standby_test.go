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
