package main

import (
	"context"

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

// newRTCStore returns the store of WebRTC ICE sessions: the mesh's
// replicated session table, so that any node can relay a session's UDP flow.
func newRTCStore(node *mesh.Node) webrtc.SessionStore { return rtcStore{node} }

// rtcStore adapts mesh.Node's session methods to webrtc.SessionStore.
type rtcStore struct{ node *mesh.Node }

var _ webrtc.SessionStore = rtcStore{}

func (s rtcStore) PutRTCSession(ctx context.Context, r webrtc.RTCSession) error {
	return s.node.PutRTCSession(ctx, stream.RTCSession{
		Ufrag: r.Ufrag, OriginID: r.OriginID, OriginRTC: r.OriginRTC, Key: r.Key,
		Resource: r.Resource, Pwd: r.Pwd, CreatedUnixMs: r.CreatedUnixMs,
	})
}

func (s rtcStore) LookupRTCSession(ufrag string) (webrtc.RTCSession, bool) {
	r, ok := s.node.LookupRTCSession(ufrag)
	if !ok {
		return webrtc.RTCSession{}, false
	}
	return webrtc.RTCSession{
		Ufrag: r.Ufrag, OriginID: r.OriginID, OriginRTC: r.OriginRTC, Key: r.Key,
		Resource: r.Resource, Pwd: r.Pwd, CreatedUnixMs: r.CreatedUnixMs,
	}, true
}

func (s rtcStore) DeleteRTCSession(ctx context.Context, ufrag string) error {
	return s.node.DeleteRTCSession(ctx, ufrag)
}
