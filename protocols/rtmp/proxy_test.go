package rtmp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// fakeRouter routes with a function and records the keys it was asked for.
type fakeRouter struct {
	route func(ctx context.Context, key stream.Key) (stream.Origin, error)
	keys  chan stream.Key
}

func (f *fakeRouter) Route(ctx context.Context, key stream.Key) (stream.Origin, error) {
	if f.keys != nil {
		select {
		case f.keys <- key:
		default:
		}
	}
	return f.route(ctx, key)
}

// RoutePlay is Route: the fake routes players like publishers.
func (f *fakeRouter) RoutePlay(ctx context.Context, key stream.Key) (stream.Origin, error) {
	return f.Route(ctx, key)
}

func routeTo(addr string) *fakeRouter {
	return &fakeRouter{
		keys: make(chan stream.Key, 16),
		route: func(context.Context, stream.Key) (stream.Origin, error) {
			return stream.Origin{ID: "o1", RTMP: addr}, nil
		},
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startProxy starts a Server on a loopback port and closes it at the end of
// the test, checking that Serve returned nil.
func startProxy(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}); !errors.Is(err, ErrNoRouter) {
		t.Fatalf("no router: %v", err)
	}
	if _, err := New(Config{Router: routeTo("x"), IdleTimeout: -1}); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("negative timeout: %v", err)
	}
	s, err := New(Config{Router: routeTo("x")})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.HandshakeTimeout != DefaultHandshakeTimeout || s.cfg.MaxConns != DefaultMaxConns || s.cfg.MaxMessageSize != DefaultMaxMessageSize {
		t.Fatalf("defaults: %+v", s.cfg)
	}
	s.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := s.Serve(ln); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
}

// TestNginxPublishPlay publishes with FFmpeg through the proxy to a real
// nginx-rtmp origin and plays it back through the proxy, with a stream name
// query on both.
func TestNginxPublishPlay(t *testing.T) {
	harness.Need(t, "ffmpeg")
	base := runtime.NumGoroutine()
	n := harness.StartNginx(t, harness.NginxOptions{})
	r := routeTo(n.RTMPAddr)
	s, addr := startProxy(t, Config{Router: r})

	pub := harness.PublishRTMP(t, "rtmp://"+addr+"/live/s?secret=abc")
	select {
	case k := <-r.keys:
		if want := (stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: "s"}); k != want {
			t.Fatalf("routed %v, want %v", k, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("publisher never routed: %s", pub.Output())
	}
	res := harness.PlayUntil(t, "rtmp://"+addr+"/live/s", 2*time.Second, 20, 20*time.Second)
	t.Logf("played %d frames through the proxy", res.VideoFrames)
	// Two seconds of media: a play may start just after a key frame (one a
	// second) and decodes nothing before the next, so one second may hold
	// fewer than 10 decodable frames.
	res = harness.PlayUntil(t, "rtmp://"+addr+"/live/s?token=xyz", 2*time.Second, 10, 20*time.Second)
	t.Logf("played %d frames with a query", res.VideoFrames)
	// The origin has it under the plain name.
	harness.PlayUntil(t, "rtmp://"+n.RTMPAddr+"/live/s", 2*time.Second, 10, 20*time.Second)
	if pub.Exited() {
		t.Fatalf("publisher exited: %s", pub.Output())
	}
	st := s.Stats()
	// FFmpeg signs its C1, and checks our S1 and S2 when it plays: every
	// connection (the publisher and at least two players; PlayUntil plays
	// again when a slow run decodes too few frames) is a complex handshake.
	if st.Publishers != 1 || st.BytesIn == 0 || st.OriginBytesOut == 0 || st.ComplexHandshakes < 3 ||
		st.ComplexHandshakes != st.ConnsAccepted {
		t.Fatalf("stats %+v", st)
	}
	// The origin dies: the proxy closes the publisher's connection, and
	// FFmpeg gives up.
	n.Kill()
	if err := pub.Wait(15 * time.Second); err != nil && strings.Contains(err.Error(), "still running") {
		t.Fatalf("publisher still running after its origin died: %v", err)
	}
	testkit.WaitFor(t, 5*time.Second, "sessions ended", func() bool { return s.Stats().ConnsOpen == 0 })
	s.Close()
	if err := testkit.GoroutinesBack(base+2, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}
