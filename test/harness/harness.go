// Package harness starts the real processes that srs-mesh's end-to-end tests
// drive: nginx-rtmp origins, FFmpeg publishers and players, and srs-mesh
// nodes. Every process is tied to the test that started it and is killed in
// t.Cleanup. Tests that need a tool that is not installed are skipped.
package harness

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Need skips the test unless every named executable is on PATH.
func Need(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. When
// udp is true the same port is also free for UDP.
func FreePort(t testing.TB, udp bool) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if udp {
			pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				ln.Close()
				continue
			}
			pc.Close()
		}
		ln.Close()
		return port
	}
	t.Fatal("no free port")
	return 0
}

// FreeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen udp: %v", err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// WaitFor polls cond every 50 ms until it is true or timeout passes, then
// fails the test with msg.
func WaitFor(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", timeout, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitTCP waits until something accepts TCP connections on addr.
func WaitTCP(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	WaitFor(t, timeout, "tcp "+addr+" accepting", func() bool {
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
