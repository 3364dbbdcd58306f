// Package harness starts the real processes that srs-mesh's end-to-end tests
// drive: nginx-rtmp origins, FFmpeg publishers and players, and srs-mesh
// nodes. Every process is tied to the test that started it and is killed in
// t.Cleanup. Tests that need a tool that is not installed are skipped, or
// fail in strict mode (see Strict).
package harness

import (
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// Need skips the test (fails it in strict mode, see Strict) unless every
// named executable is on PATH.
func Need(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			Missing(t, tool, "not installed (not on PATH)")
		}
	}
}

// WaitTCP waits until something accepts TCP connections on addr.
func WaitTCP(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	testkit.WaitFor(t, timeout, "tcp "+addr+" accepting", func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// tail returns at most the last n bytes of s, for error messages.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// lockedBuffer is an io.Writer safe for concurrent use by exec.Cmd's copiers
// and the test reading it.
type lockedBuffer struct {
	ch chan struct{}
	b  []byte
}

func newLockedBuffer() *lockedBuffer {
	lb := &lockedBuffer{ch: make(chan struct{}, 1)}
	lb.ch <- struct{}{}
	return lb
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	<-l.ch
	defer func() { l.ch <- struct{}{} }()
	if len(l.b) < 1<<20 {
		l.b = append(l.b, p...)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	<-l.ch
	defer func() { l.ch <- struct{}{} }()
	return string(l.b)
}
