package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func dialTimeout(addr string, d time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, d)
}

// Proc is a background process started by a test (a publisher, an origin
// made of FFmpeg). It is killed at the end of the test.
type Proc struct {
	Cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error
}

// Start runs name with args in the background, tied to t.
func Start(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	return StartEnv(t, nil, name, args...)
}

// StartEnv is Start with an explicit environment (nil: inherit).
func StartEnv(t testing.TB, env []string, name string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Cmd: exec.Command(name, args...), out: newLockedBuffer(), done: make(chan struct{})}
	p.Cmd.Env = env
	p.Cmd.Stdout, p.Cmd.Stderr = p.out, p.out
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(p.Kill)
	return p
}

// Output is what the process printed so far (stdout and stderr).
func (p *Proc) Output() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits up to d for the process to exit and returns its error.
func (p *Proc) Wait(d time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		return fmt.Errorf("%s still running after %v", p.Cmd.Path, d)
	}
}

// Kill stops the process group with SIGKILL and waits for it.
func (p *Proc) Kill() {
	if p.Exited() {
		return
	}
	syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Stop asks the process to stop (SIGINT lets FFmpeg finish its output file)
// and kills it if it has not exited within d.
func (p *Proc) Stop(d time.Duration) {
	if p.Exited() {
		return
	}
	p.Cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(d):
		p.Kill()
	}
}

// TestSourceArgs are FFmpeg input arguments for a generated stream: a test
// pattern and a sine tone, in real time.
func TestSourceArgs() []string {
	return []string{
		"-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
		"-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
	}
}

// EncodeArgs are FFmpeg encoder arguments (libx264 + AAC, a key frame every
// second) suited to live streaming.
func EncodeArgs() []string {
	return []string{
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
		"-pix_fmt", "yuv420p", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
		"-c:a", "aac", "-b:a", "64k", "-ar", "44100",
	}
}

// PublishRTMP starts FFmpeg publishing a generated stream to an rtmp:// URL
// until the test ends or the process is stopped.
func PublishRTMP(t testing.TB, url string) *Proc {
	t.Helper()
	Need(t, "ffmpeg")
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin"}
	args = append(args, TestSourceArgs()...)
	args = append(args, EncodeArgs()...)
	args = append(args, "-f", "flv", url)
	return Start(t, "ffmpeg", args...)
}

// PublishRTMPDistinct is PublishRTMP with a test pattern whose every
// encoded video frame differs from the others (testsrc2; testsrc encodes
// a few identical frames), so that a FrameWatch can tell a frame seen
// twice.
func PublishRTMPDistinct(t testing.TB, url string) *Proc {
	t.Helper()
	Need(t, "ffmpeg")
	src := TestSourceArgs()
	src[4] = "testsrc2=size=320x240:rate=25"
	args := append([]string{"-hide_banner", "-loglevel", "error", "-nostdin"}, src...)
	args = append(args, EncodeArgs()...)
	args = append(args, "-f", "flv", url)
	return Start(t, "ffmpeg", args...)
}

// PlayResult is what a bounded FFmpeg play run decoded.
type PlayResult struct {
	VideoFrames int
	Output      string
}

// Play reads url with FFmpeg for about dur of media, decoding video, and
// returns the number of decoded frames. The whole run is bounded by ctx.
// Extra input options (e.g. "-f", "flv") go in inputArgs.
func Play(ctx context.Context, url string, dur time.Duration, inputArgs ...string) (PlayResult, error) {
	return play(ctx, url, dur, nil, inputArgs)
}

// PlayCopy is Play without decoding: FFmpeg demuxes every frame and copies
// it to nowhere, which costs far less CPU for tests with many players.
func PlayCopy(ctx context.Context, url string, dur time.Duration, inputArgs ...string) (PlayResult, error) {
	return play(ctx, url, dur, []string{"-c", "copy"}, inputArgs)
}

func play(ctx context.Context, url string, dur time.Duration, outputArgs, inputArgs []string) (PlayResult, error) {
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin", "-rw_timeout", "10000000"}
	args = append(args, inputArgs...)
	args = append(args, "-i", url, "-t", strconv.FormatFloat(dur.Seconds(), 'f', 1, 64), "-map", "0:v:0")
	args = append(args, outputArgs...)
	args = append(args, "-f", "null", "-progress", "pipe:1", "-nostats", "-")
	cmd := exec.CommandContext(ctx, "ffmpeg", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	errBuf := newLockedBuffer()
	cmd.Stderr = errBuf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return PlayResult{}, err
	}
	if err := cmd.Start(); err != nil {
		return PlayResult{}, err
	}
	frames := 0
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "frame="); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				frames = n
			}
		}
	}
	werr := cmd.Wait()
	res := PlayResult{VideoFrames: frames, Output: tail(errBuf.String(), 2000)}
	if werr != nil {
		return res, fmt.Errorf("ffmpeg play %s: %v: %s", url, werr, res.Output)
	}
	if frames == 0 {
		return res, errors.New("ffmpeg play " + url + ": no video frames decoded: " + res.Output)
	}
	return res, nil
}

// PlayUntil retries Play until it decodes at least minFrames or timeout
// passes; a stream that was just published may not be playable at once.
func PlayUntil(t testing.TB, url string, dur time.Duration, minFrames int, timeout time.Duration, inputArgs ...string) PlayResult {
	t.Helper()
	Need(t, "ffmpeg")
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		// An attempt whose FFmpeg stalls (seen with a direct nginx-rtmp
		// play on a loaded machine) is cut short so that another fits in
		// the timeout.
		ctx, cancel := context.WithTimeout(context.Background(), min(dur+10*time.Second, max(time.Until(deadline), dur+2*time.Second)))
		res, err := Play(ctx, url, dur, inputArgs...)
		cancel()
		if err == nil && res.VideoFrames >= minFrames {
			return res
		}
		if err == nil {
			err = fmt.Errorf("only %d frames", res.VideoFrames)
		}
		last = err
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("could not play %s within %v: %v", url, timeout, last)
	return PlayResult{}
}
