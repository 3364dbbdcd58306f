// Package route picks how a protocol server asks its Router for a stream's
// origin: players go through RoutePlay when the Router has it (srs-mesh's
// mesh bounds what players of streams nobody publishes add to its state),
// publishers through RoutePublish and then PublishAccepted when the Router
// has them (the mesh writes a publish's assignment only once the origin
// accepted it), and everything else through Route.
package route

import (
	"context"

	"github.com/srs-mesh/srs-mesh/stream"
)

// Func is a Router's Route or RoutePlay.
type Func func(ctx context.Context, key stream.Key) (stream.Origin, error)

// Player is implemented by Routers with a route for players.
type Player interface {
	RoutePlay(ctx context.Context, key stream.Key) (stream.Origin, error)
}

// For returns router's RoutePlay for a play when it has one, else route
// (the router's Route).
func For(router any, route Func, play bool) Func {
	if p, ok := router.(Player); ok && play {
		return p.RoutePlay
	}
	return route
}

// Publisher is implemented by Routers that write a publish's assignment
// only once the origin accepted the publish, so that a publish the origin
// refuses leaves no state behind. RoutePublish finds the origin to ask;
// PublishAccepted, called once that origin accepted, returns the origin
// the stream is assigned to (another one when a client of another node
// assigned it first: the publisher belongs there).
type Publisher interface {
	RoutePublish(ctx context.Context, key stream.Key) (stream.Origin, error)
	PublishAccepted(ctx context.Context, key stream.Key, origin stream.Origin) (stream.Origin, error)
}

// Publish returns router's RoutePublish when it is a Publisher, else
// route (the router's Route). A caller that uses it calls Accepted once the
// origin accepted the publish.
func Publish(router any, route Func) Func {
	if p, ok := router.(Publisher); ok {
		return p.RoutePublish
	}
	return route
}

// Accepted tells router that origin accepted a publish of key and returns
// the origin the stream is assigned to: origin itself for a Router that is
// not a Publisher.
func Accepted(ctx context.Context, router any, key stream.Key, origin stream.Origin) (stream.Origin, error) {
	if p, ok := router.(Publisher); ok {
		return p.PublishAccepted(ctx, key, origin)
	}
	return origin, nil
}
