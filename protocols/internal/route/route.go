// Package route picks how a protocol server asks the mesh for a stream's
// origin: players go through the Router's RoutePlay (srs-mesh's mesh bounds
// what players of streams nobody publishes add to its state), publishers
// through the Publisher's RoutePublish and then PublishAccepted when the
// server has a Publisher (the mesh writes a publish's assignment only once
// the origin accepted it), and everything else through Route.
package route

import (
	"context"

	"github.com/srs-mesh/srs-mesh/stream"
)

// Func is a Router's Route or RoutePlay, or a Publisher's RoutePublish.
type Func func(ctx context.Context, key stream.Key) (stream.Origin, error)

// For returns router's RoutePlay for a play, else its Route.
func For(router stream.Router, play bool) Func {
	if play {
		return router.RoutePlay
	}
	return router.Route
}

// Publish returns p's RoutePublish, or router's Route when p is nil. A
// caller that uses it calls Accepted once the origin accepted the publish.
func Publish(router stream.Router, p stream.Publisher) Func {
	if p != nil {
		return p.RoutePublish
	}
	return router.Route
}

// Accepted tells p that origin accepted a publish of key and returns the
// origin the stream is assigned to: origin itself when p is nil.
func Accepted(ctx context.Context, p stream.Publisher, key stream.Key, origin stream.Origin) (stream.Origin, error) {
	if p != nil {
		return p.PublishAccepted(ctx, key, origin)
	}
	return origin, nil
}
