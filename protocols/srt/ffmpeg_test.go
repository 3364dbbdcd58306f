package srt

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/internal/protocoltest"
	"github.com/srs-mesh/srs-mesh/stream"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// srtOrigin starts FFmpeg as an SRT listener that records what it receives
// to a TS file, and waits until it answers handshakes.
func srtOrigin(t *testing.T, query string) (addr, out string, p *harness.Proc) {
	t.Helper()
	port := testkit.FreeUDPPort(t)
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	out = filepath.Join(t.TempDir(), "origin.ts")
	p = harness.Start(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
		"-i", "srt://"+addr+"?mode=listener"+query, "-c", "copy", "-f", "mpegts", out)
	harness.WaitSRTListener(t, addr, 10*time.Second)
	return addr, out, p
}

// publish starts FFmpeg publishing a generated stream for dur to an srt:// URL.
func publish(t *testing.T, url string, dur time.Duration) *harness.Proc {
	t.Helper()
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin"}
	args = append(args, harness.TestSourceArgs()...)
	args = append(args, harness.EncodeArgs()...)
	args = append(args, "-t", fmt.Sprintf("%.1f", dur.Seconds()), "-f", "mpegts", url)
	return harness.Start(t, "ffmpeg", args...)
}

// publishThrough publishes through the proxy for a few seconds and checks
// that the origin recorded a decodable stream.
func publishThrough(t *testing.T, query string) {
	needSRT(t)
	testkit.CheckOwnGoroutines(t, "protocols/srt.")
	originAddr, out, origin := srtOrigin(t, query)
	sessions := &protocoltest.Sessions{}
	srv, proxy := startServer(t, Config{Router: staticRouter(originAddr), Sessions: sessions})

	pub := publish(t, "srt://"+proxy.String()+"?streamid=#!::r=live/s,m=publish"+query, 3*time.Second)
	key := stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: "s"}
	testkit.WaitFor(t, 10*time.Second, "session tracked", func() bool {
		a, _ := sessions.Count(key, "srt")
		return a == 1
	})
	if err := pub.Wait(20 * time.Second); err != nil {
		t.Fatalf("publisher: %v: %s", err, pub.Output())
	}
	// The publisher's SHUTDOWN ends the origin's input; FFmpeg then exits.
	if err := origin.Wait(10 * time.Second); err != nil {
		origin.Stop(5 * time.Second)
	}
	if n := harness.CountVideoFrames(t, out); n < 25 {
		t.Fatalf("origin recorded %d video frames, want >= 25: %s", n, origin.Output())
	} else {
		t.Logf("origin recorded %d video frames", n)
	}
	testkit.WaitFor(t, 5*time.Second, "session reclaimed after SHUTDOWN", func() bool {
		return srv.Stats().Sessions == 0
	})
	if a, total := sessions.Count(key, "srt"); a != 0 || total != 1 {
		t.Errorf("sessions: active %d total %d, want 0 and 1", a, total)
	}
	st := srv.Stats()
	t.Logf("stats: %+v", st)
	if st.PacketsIn == 0 || st.PacketsOut == 0 {
		t.Errorf("no packets relayed: %+v", st)
	}
}

func TestFFmpegPublish(t *testing.T) { publishThrough(t, "") }

func TestFFmpegPublishEncrypted(t *testing.T) {
	publishThrough(t, "&passphrase=srs-mesh-secret-1&pbkeylen=16")
}

// A wrong passphrase is the origin's business: its rejection reaches the
// caller through the proxy.
func TestFFmpegWrongPassphraseRejectedByOrigin(t *testing.T) {
	needSRT(t)
	testkit.CheckOwnGoroutines(t, "protocols/srt.")
	originAddr, _, _ := srtOrigin(t, "&passphrase=srs-mesh-secret-1&pbkeylen=16")
	srv, proxy := startServer(t, Config{Router: staticRouter(originAddr)})
	start := time.Now()
	pub := publish(t, "srt://"+proxy.String()+"?streamid=#!::r=live/s,m=publish&passphrase=not-the-secret-2&pbkeylen=16", 3*time.Second)
	if err := pub.Wait(10 * time.Second); err == nil {
		t.Fatalf("publisher with a wrong passphrase succeeded: %s", pub.Output())
	}
	t.Logf("refused after %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(pub.Output()))
	if got := srv.Stats().Rejects[RejectOriginRejects]; got == 0 {
		t.Errorf("rejects: %+v, want %s", srv.Stats().Rejects, RejectOriginRejects)
	}
}

func TestFFmpegPlay(t *testing.T) {
	needSRT(t)
	testkit.CheckOwnGoroutines(t, "protocols/srt.")
	port := testkit.FreeUDPPort(t)
	originAddr := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin"}
	args = append(args, harness.TestSourceArgs()...)
	args = append(args, harness.EncodeArgs()...)
	args = append(args, "-f", "mpegts", "srt://"+originAddr+"?mode=listener")
	harness.Start(t, "ffmpeg", args...)
	harness.WaitSRTListener(t, originAddr, 10*time.Second)

	srv, proxy := startServer(t, Config{Router: staticRouter(originAddr)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := harness.Play(ctx, "srt://"+proxy.String()+"?streamid=#!::h=example.com,r=live/s,m=request", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.VideoFrames < 10 {
		t.Fatalf("played %d frames", res.VideoFrames)
	}
	t.Logf("played %d frames; stats %+v", res.VideoFrames, srv.Stats())
}

// A dead origin must not block the listener: the caller of the dead stream
// is refused quickly while a publisher on a healthy origin keeps streaming.
func TestFFmpegDeadOriginDoesNotBlockOthers(t *testing.T) {
	needSRT(t)
	testkit.CheckOwnGoroutines(t, "protocols/srt.")
	healthy, out, origin := srtOrigin(t, "")
	dead := fmt.Sprintf("127.0.0.1:%d", testkit.FreeUDPPort(t))
	router := protocoltest.RouterFunc(func(_ context.Context, key stream.Key) (stream.Origin, error) {
		if key.Stream == "dead" {
			return stream.Origin{ID: "dead", SRT: dead}, nil
		}
		return stream.Origin{ID: "healthy", SRT: healthy}, nil
	})
	srv, proxy := startServer(t, Config{Router: router})

	pub := publish(t, "srt://"+proxy.String()+"?streamid=#!::r=live/ok,m=publish", 6*time.Second)
	testkit.WaitFor(t, 10*time.Second, "healthy session established", func() bool {
		return srv.Stats().Established == 1
	})
	before := srv.Stats().PacketsIn

	start := time.Now()
	deadPub := publish(t, "srt://"+proxy.String()+"?streamid=#!::r=live/dead,m=publish", 3*time.Second)
	if err := deadPub.Wait(10 * time.Second); err == nil {
		t.Fatalf("publisher to a dead origin succeeded: %s", deadPub.Output())
	}
	took := time.Since(start)
	t.Logf("dead origin: caller refused after %v: %s", took.Round(time.Millisecond), strings.TrimSpace(deadPub.Output()))
	if took > 10*time.Second {
		t.Errorf("refusal took %v", took)
	}
	if srv.Stats().Rejects[RejectOriginRefused]+srv.Stats().Rejects[RejectOriginTimeout] == 0 {
		t.Errorf("rejects: %+v", srv.Stats().Rejects)
	}
	mid := srv.Stats().PacketsIn
	testkit.WaitFor(t, 5*time.Second, "healthy stream still relayed", func() bool {
		return srv.Stats().PacketsIn > mid
	})
	if mid <= before {
		t.Errorf("healthy stream stalled while the dead origin was tried: %d -> %d packets", before, mid)
	}
	if err := pub.Wait(20 * time.Second); err != nil {
		t.Fatalf("healthy publisher: %v: %s", err, pub.Output())
	}
	if err := origin.Wait(10 * time.Second); err != nil {
		origin.Stop(5 * time.Second)
	}
	if n := harness.CountVideoFrames(t, out); n < 50 {
		t.Fatalf("healthy origin recorded %d frames", n)
	}
}
