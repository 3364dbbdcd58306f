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

type publisher struct {
	plain
	accepted []string
}

func (*publisher) RoutePublish(context.Context, stream.Key) (stream.Origin, error) {
	return stream.Origin{ID: "publish"}, nil
}

func (p *publisher) PublishAccepted(_ context.Context, _ stream.Key, o stream.Origin) (stream.Origin, error) {
	p.accepted = append(p.accepted, o.ID)
	return stream.Origin{ID: "assigned"}, nil
}

func TestPublish(t *testing.T) {
	ctx := context.Background()
	if o, _ := Publish(plain{}, plain{}.Route)(ctx, stream.Key{}); o.ID != "route" {
		t.Errorf("plain router: %s", o.ID)
	}
	if o, _ := Accepted(ctx, plain{}, stream.Key{}, stream.Origin{ID: "x"}); o.ID != "x" {
		t.Errorf("plain router accepted: %s", o.ID)
	}
	p := &publisher{}
	if o, _ := Publish(p, p.Route)(ctx, stream.Key{}); o.ID != "publish" {
		t.Errorf("publisher: %s", o.ID)
	}
	if o, _ := Accepted(ctx, p, stream.Key{}, stream.Origin{ID: "x"}); o.ID != "assigned" || len(p.accepted) != 1 || p.accepted[0] != "x" {
		t.Errorf("publisher accepted: %s %v", o.ID, p.accepted)
	}
}
