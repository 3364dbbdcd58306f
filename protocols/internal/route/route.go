// Package route picks how a protocol server asks its Router for a stream's
// origin: players go through RoutePlay when the Router has it (srs-mesh's
// mesh bounds what players of streams nobody publishes add to its state),
// and everything else through Route.
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
