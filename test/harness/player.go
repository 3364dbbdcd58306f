package harness

import (
	"bytes"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// Player is a long-running FFmpeg reader of a live stream that decodes video
// and counts the frames it has decoded so far (from -progress output), so a
// test can watch a play session while something else happens to the mesh.
type Player struct {
	*Proc
	URL    string
	frames atomic.Int64
}

// StartPlayer starts FFmpeg reading url until it ends, fails, or the test
// stops it. Extra input options (e.g. "-f", "flv") go in inputArgs.
func StartPlayer(t testing.TB, url string, inputArgs ...string) *Player {
	t.Helper()
	Need(t, "ffmpeg")
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin", "-rw_timeout", "10000000"}
	args = append(args, inputArgs...)
	args = append(args, "-i", url, "-map", "0:v:0", "-f", "null", "-progress", "pipe:1", "-nostats", "-")
	pl := &Player{URL: url}
	p := &Proc{Cmd: exec.Command("ffmpeg", args...), out: newLockedBuffer(), done: make(chan struct{})}
	p.Cmd.Stdout = &progressWriter{frame: func(n int64) { pl.frames.Store(n) }}
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
