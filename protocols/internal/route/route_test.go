package route

import (
	"context"
	"testing"

	"github.com/srs-mesh/srs-mesh/stream"
)

type router struct{}

func (router) Route(context.Context, stream.Key) (stream.Origin, error) {
	return stream.Origin{ID: "route"}, nil
}

func (router) RoutePlay(context.Context, stream.Key) (stream.Origin, error) {
	return stream.Origin{ID: "play"}, nil
}

func TestFor(t *testing.T) {
	for _, c := range []struct {
		play bool
		want string
	}{
		{true, "play"},
		{false, "route"},
	} {
		o, _ := For(router{}, c.play)(context.Background(), stream.Key{})
		if o.ID != c.want {
			t.Errorf("play=%v: %s, want %s", c.play, o.ID, c.want)
		}
	}
}

type publisher struct{ accepted []string }

func (*publisher) RoutePublish(context.Context, stream.Key) (stream.Origin, error) {
	return stream.Origin{ID: "publish"}, nil
}

func (p *publisher) PublishAccepted(_ context.Context, _ stream.Key, o stream.Origin) (stream.Origin, error) {
	p.accepted = append(p.accepted, o.ID)
	return stream.Origin{ID: "assigned"}, nil
}

func TestPublish(t *testing.T) {
	ctx := context.Background()
	if o, _ := Publish(router{}, nil)(ctx, stream.Key{}); o.ID != "route" {
		t.Errorf("no publisher: %s", o.ID)
	}
	if o, _ := Accepted(ctx, nil, stream.Key{}, stream.Origin{ID: "x"}); o.ID != "x" {
		t.Errorf("no publisher accepted: %s", o.ID)
	}
	p := &publisher{}
	if o, _ := Publish(router{}, p)(ctx, stream.Key{}); o.ID != "publish" {
		t.Errorf("publisher: %s", o.ID)
	}
	if o, _ := Accepted(ctx, p, stream.Key{}, stream.Origin{ID: "x"}); o.ID != "assigned" || len(p.accepted) != 1 || p.accepted[0] != "x" {
		t.Errorf("publisher accepted: %s %v", o.ID, p.accepted)
	}
}
