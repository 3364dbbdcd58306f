// Package testkit is the small test support that srs-mesh's package tests
// and end-to-end tests share: polling with a deadline, goroutine-leak
// checks and free loopback ports. It starts no process and knows no
// package of ours.
package testkit

import (
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pollEvery is how often the helpers below poll.
const pollEvery = 10 * time.Millisecond

// Poll calls cond until it returns nil or timeout passes, and returns the
// last error then.
func Poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(pollEvery)
	}
}

// WaitFor polls cond until it holds, and fails the test with msg after
// timeout.
func WaitFor(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	if Poll(timeout, func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("timed out after %v: %s", timeout, msg)
	}) != nil {
		t.Fatalf("timed out after %v: %s", timeout, msg)
	}
}

// Eventually polls cond until it returns nil, and fails the test with its
// last error after timeout.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	if err := Poll(timeout, cond); err != nil {
		t.Fatalf("after %v: %v", timeout, err)
	}
}

// GoroutinesBack waits up to timeout until at most base goroutines run,
// collecting garbage on the way (which closes dropped sockets), and
// returns an error with every goroutine's stack if they do not.
func GoroutinesBack(base int, timeout time.Duration) error {
	return Poll(timeout, func() error {
		runtime.GC()
		if n := runtime.NumGoroutine(); n > base {
			buf := make([]byte, 1<<20)
			return fmt.Errorf("%d goroutines, want at most %d:\n%s", n, base, buf[:runtime.Stack(buf, true)])
		}
		return nil
	})
}

// CheckGoroutines fails the test if, once the cleanups registered after it
// have run, more goroutines run than when it was called. Call it first in
// a test.
func CheckGoroutines(t testing.TB) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		if err := GoroutinesBack(base, 5*time.Second); err != nil {
			t.Errorf("goroutine leak: %v", err)
		}
	})
}

// CheckOwnGoroutines is CheckGoroutines by stack rather than by count: it
// fails the test if goroutines running code whose stack mentions pkg (such
// as "protocols/srt.") remain. It suits tests that run beside machinery
// that starts goroutines of its own (fuzzing).
func CheckOwnGoroutines(t testing.TB, pkg string) {
	t.Helper()
	t.Cleanup(func() {
		err := Poll(5*time.Second, func() error {
			if left := goroutinesIn(pkg); len(left) > 0 {
				return fmt.Errorf("%d goroutines left:\n%s", len(left), strings.Join(left, "\n\n"))
			}
			return nil
		})
		if err != nil {
			t.Errorf("goroutine leak: %v", err)
		}
	})
}

// goroutinesIn returns the stacks of goroutines, other than the caller's,
// that run code of pkg.
func goroutinesIn(pkg string) []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i > 0 && strings.Contains(g, pkg) {
			out = append(out, g)
		}
	}
	return out
}

// FreePort returns a loopback port that was free for TCP (and for UDP too
// when udp is true) a moment ago. It is drawn at random below Linux's
// ephemeral range (32768-60999), so that the local ports of outgoing
// connections, which the kernel takes from that range, do not grab it
// before the test binds it.
func FreePort(t testing.TB, udp bool) int {
	t.Helper()
	for range 500 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		if udp {
			pc, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
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

// FreeUDPPort returns a loopback port that was free for UDP a moment ago,
// drawn like FreePort's.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	for range 500 {
		port := 20000 + rand.IntN(12000)
		pc, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		pc.Close()
		return port
	}
	t.Fatal("no free UDP port")
	return 0
}
