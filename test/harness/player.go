package harness

import (
	"bytes"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Player is a long-running FFmpeg reader of a live stream that decodes video
// and counts the frames it has decoded so far (from -progress output), so a
// test can watch a play session while something else happens to the mesh.
type Player struct {
	*Proc
	URL    string
	frames atomic.Int64

	mu      sync.Mutex
	last    time.Time     // when the frame count last grew
	longest time.Duration // longest time between two increases
}

// StartPlayer starts FFmpeg reading url until it ends, fails, or the test
// stops it. Extra input options (e.g. "-f", "flv") go in inputArgs.
func StartPlayer(t testing.TB, url string, inputArgs ...string) *Player {
	t.Helper()
	return startPlayer(t, url, nil, inputArgs)
}

// StartCopyPlayer is StartPlayer without decoding: FFmpeg demuxes every
// frame and copies it to nowhere, which costs far less CPU where a test
// runs many players.
func StartCopyPlayer(t testing.TB, url string, inputArgs ...string) *Player {
	t.Helper()
	return startPlayer(t, url, []string{"-c", "copy"}, inputArgs)
}

func startPlayer(t testing.TB, url string, outputArgs, inputArgs []string) *Player {
	t.Helper()
	Need(t, "ffmpeg")
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin", "-rw_timeout", "10000000"}
	args = append(args, inputArgs...)
	args = append(args, "-i", url, "-map", "0:v:0")
	args = append(args, outputArgs...)
	args = append(args, "-f", "null", "-progress", "pipe:1", "-nostats", "-")
	pl := &Player{URL: url}
	p := &Proc{Cmd: exec.Command("ffmpeg", args...), out: newLockedBuffer(), done: make(chan struct{})}
	p.Cmd.Stdout = &progressWriter{frame: pl.progress}
	p.Cmd.Stderr = p.out
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start ffmpeg player: %v", err)
	}
	go func() { p.err = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(p.Kill)
	pl.Proc = p
	return pl
}

// Frames is the number of video frames decoded so far.
func (p *Player) Frames() int { return int(p.frames.Load()) }

// progress records a frame count reported by FFmpeg.
func (p *Player) progress(n int64) {
	if n <= p.frames.Load() {
		return
	}
	p.frames.Store(n)
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.last.IsZero() {
		p.longest = max(p.longest, now.Sub(p.last))
	}
	p.last = now
}

// LongestStall is the longest time FFmpeg decoded no new frame, between two
// progress reports that showed new frames or from the last such report
// until now, counted from the first decoded frame (FFmpeg reports progress
// about twice a second).
func (p *Player) LongestStall() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last.IsZero() {
		return 0
	}
	return max(p.longest, time.Since(p.last))
}

// progressWriter parses FFmpeg's -progress key=value lines and reports every
// frame= value.
type progressWriter struct {
	mu    sync.Mutex
	line  []byte
	frame func(int64)
}

func (w *progressWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.line = append(w.line, b...)
	for {
		i := bytes.IndexByte(w.line, '\n')
		if i < 0 {
			break
		}
		line := bytes.TrimSpace(w.line[:i])
		w.line = w.line[i+1:]
		if v, ok := bytes.CutPrefix(line, []byte("frame=")); ok {
			if n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64); err == nil {
				w.frame(n)
			}
		}
	}
	return len(b), nil
}
