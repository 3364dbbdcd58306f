package main

import (
	"sync/atomic"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/protocols/api"
	"github.com/srs-mesh/srs-mesh/protocols/webrtc"
	"github.com/srs-mesh/srs-mesh/stream"
)

// The protocol packages declare the small interfaces they need; these
// adapters give them the mesh's view without either side importing the other.

// apiOrigins is the origin list of the SRS API aggregation.
type apiOrigins struct{ node *mesh.Node }

func (a apiOrigins) Origins() []api.OriginInfo {
	st := a.node.Status()
	out := make([]api.OriginInfo, 0, len(st.Origins))
	for _, o := range st.Origins {
		out = append(out, api.OriginInfo{
			Origin: stream.Origin{ID: o.ID, IP: o.IP, RTMP: o.RTMP, HTTP: o.HTTP, API: o.API, SRT: o.SRT, RTC: o.RTC,
				Service: o.Service, PID: o.PID, Static: o.Static},
			Healthy:  o.Healthy,
			Draining: o.Draining,
		})
	}
	return out
}

// nodeSessions is the node as every protocol's stream.Sessions: a session
// with byte counters is metered (mesh.Node.TrackMetered, for its stream's
// bit rates), one with none only counted (mesh.Node.Track).
type nodeSessions struct{ node *mesh.Node }

func (s nodeSessions) Track(key stream.Key, proto, kind string, in, out *atomic.Uint64) (end func()) {
	if in == nil && out == nil {
		return s.node.Track(key, proto, kind)
	}
	if in == nil {
		in = new(atomic.Uint64)
	}
	if out == nil {
		out = new(atomic.Uint64)
	}
	return s.node.TrackMetered(key, proto, kind, in, out)
}

// newRTCStore returns the store of WebRTC ICE sessions: the mesh's
// replicated session table, so that any node can relay a session's UDP flow.
// mesh.Node and the webrtc package share stream.RTCSession, so the node is
// the store as it is. It is also the relay's SessionActivity
// (webrtc.Config.Activity): the sessions the relay carries are protected
// from eviction and expiry.
func newRTCStore(node *mesh.Node) webrtc.SessionStore { return node }

var (
	_ stream.Sessions        = nodeSessions{}
	_ webrtc.SessionStore    = (*mesh.Node)(nil)
	_ webrtc.SessionActivity = (*mesh.Node)(nil)
)
