package mesh

// The Node's side of the replicated WebRTC ICE session table is package
// rtcsessions; these are the calls the WebRTC server makes.

import (
	"context"

	"github.com/srs-mesh/srs-mesh/stream"
)

// PutRTCSession stores a WebRTC ICE session in the replicated table, through
// the leader, and returns once this node can look it up (within
// Config.RouteTimeout); see rtcsessions.Store.Put. A full table fails with
// ErrRTCTableFull unless a session no relay carries can be evicted.
func (n *Node) PutRTCSession(ctx context.Context, s stream.RTCSession) error {
	return n.rtc.Put(ctx, s)
}

// TouchRTCSessions records that this node's relay carried packets of the
// sessions named by ufrags, which protects them from eviction and expiry;
// see rtcsessions.Store.Touch. It never blocks on the network.
func (n *Node) TouchRTCSessions(ufrags []string) { n.rtc.Touch(ufrags) }

// DeleteRTCSession removes a session from the replicated table; deleting an
// absent session is not an error. Bounds and read-your-write as PutRTCSession.
func (n *Node) DeleteRTCSession(ctx context.Context, ufrag string) error {
	return n.rtc.Delete(ctx, ufrag)
}

// LookupRTCSession reads a session from this node's replica: a map read under
// a read lock, no network.
func (n *Node) LookupRTCSession(ufrag string) (stream.RTCSession, bool) {
	return n.rtc.Lookup(ufrag)
}
