package stream

import (
	"context"
	"sync/atomic"
)

// Router maps a stream key to the origin that holds (or will hold) it. It
// is what every protocol server needs from the mesh to relay a client;
// servers call it from the client's goroutine with a context bounded by
// their own timeout.
type Router interface {
	// Route returns the origin of key for a publisher (and anything that
	// is not a player), assigning the stream when it has no origin yet.
	Route(ctx context.Context, key Key) (Origin, error)
	// RoutePlay is Route for a player. A Router may bound what players of
	// streams nobody publishes add to its state; one that need not makes
	// it Route.
	RoutePlay(ctx context.Context, key Key) (Origin, error)
}

// Publisher writes a publish's assignment only once the origin accepted
// the publish, so that a publish the origin refuses leaves no state behind.
// RoutePublish finds the origin to ask and writes nothing; PublishAccepted,
// called once that origin accepted, returns the origin the stream is
// assigned to (another one when a client of another node assigned it
// first: the publisher belongs there). A server without one routes a
// publish by Router.Route, which assigns the stream before the origin is
// asked.
type Publisher interface {
	RoutePublish(ctx context.Context, key Key) (Origin, error)
	PublishAccepted(ctx context.Context, key Key, origin Origin) (Origin, error)
}

// Sessions is told about the client sessions a protocol server relays, for
// stream statistics, bit rates and the node's count of clients. Track is
// called when a session starts relaying; the end it returns is called
// exactly once, when the session stops.
//
// A client is every publisher and every player with a connection to the
// node, on every protocol, whether it has an origin leg of its own or
// shares an upstream with other players: each is one Track, with proto
// naming its protocol ("rtmp", "flv", "ts", "srt", "webrtc") and kind
// saying what it does (KindPublish, KindPlay, or KindSession when the
// server cannot tell). A node's own leg to an origin that several players
// share is tracked too, under a proto of its own (such as "upstream") and
// with an empty kind: it is not a client.
//
// in counts the bytes the node reads from the session's client and out the
// bytes it writes to that client: the same two counters, named the same
// way, in every protocol. They only grow and stay valid after end. Either
// may be nil when the server does not count that direction; both are nil
// for a session with no client of its own (such as an upstream shared by
// several players), which is counted but not metered.
type Sessions interface {
	Track(key Key, proto, kind string, in, out *atomic.Uint64) (end func())
}

// Kinds of client sessions (Sessions.Track).
const (
	KindPublish = "publish"
	KindPlay    = "play"
	// KindSession is a client whose direction its server does not know
	// (a WebRTC media session relayed by ICE username).
	KindSession = "session"
)
