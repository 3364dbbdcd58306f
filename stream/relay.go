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
// stream statistics and bit rates. Track is called when a session starts
// relaying (proto names the protocol, such as "rtmp" or "srt"); the end it
// returns is called exactly once, when the session stops.
//
// in counts the bytes the node reads from the session's client and out the
// bytes it writes to that client: the same two counters, named the same
// way, in every protocol. They only grow and stay valid after end. Either
// may be nil when the server does not count that direction; both are nil
// for a session with no client of its own (such as an upstream shared by
// several players), which is counted but not metered.
type Sessions interface {
	Track(key Key, proto string, in, out *atomic.Uint64) (end func())
}
