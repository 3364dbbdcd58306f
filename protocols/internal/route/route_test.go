package route

import (
	"context"
	"testing"

	"github.com/srs-mesh/srs-mesh/stream"
)

type plain struct{}

func (plain) Route(context.Context, stream.Key) (stream.Origin, error) {
	return stream.Origin{ID: "route"}, nil
}

type player struct{ plain }

func (player) RoutePlay(context.Context, stream.Key) (stream.Origin, error) {
	return stream.Origin{ID: "play"}, nil
}

func TestFor(t *testing.T) {
	for _, c := range []struct {
		router interface {
			Route(context.Context, stream.Key) (stream.Origin, error)
		}
		play bool
		want string
	}{
		{plain{}, true, "route"},
		{player{}, true, "play"},
		{player{}, false, "route"},
	} {
		o, _ := For(c.router, c.router.Route, c.play)(context.Background(), stream.Key{})
		if o.ID != c.want {
			t.Errorf("%T play=%v: %s, want %s", c.router, c.play, o.ID, c.want)
		}
	}
}
