package sfu

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

func udpPair(t *testing.T) (from, to *net.UDPConn) {
	t.Helper()
	var err error
	if from, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	if to, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { from.Close(); to.Close() })
	return from, to
}

// TestSenderOrderAndCopy: packets arrive in the order queued, with the
// bytes they had when queued although the caller reuses its buffer, and a
// packet larger than a queue buffer goes out whole.
func TestSenderOrderAndCopy(t *testing.T) {
	from, to := udpPair(t)
	s := newSender(from)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.run(done) }()
	defer func() { close(done); wg.Wait() }()

	dst := to.LocalAddr().(*net.UDPAddr).AddrPort()
	to.SetReadBuffer(1 << 20)
	const n = 200
	buf := make([]byte, 200)
	for i := range n {
		binary.BigEndian.PutUint32(buf, uint32(i))
		if _, err := s.send(buf, dst); err != nil {
			t.Fatal(err)
		}
	}
	big := bytes.Repeat([]byte{7}, sendBuf+100)
	if _, err := s.send(big, dst); err != nil {
		t.Fatal(err)
	}
	to.SetReadDeadline(time.Now().Add(10 * time.Second))
	rb := make([]byte, 4096)
	for i := range n {
		k, _, err := to.ReadFromUDPAddrPort(rb)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if k != len(buf) || binary.BigEndian.Uint32(rb) != uint32(i) {
			t.Fatalf("packet %d: got %d bytes, number %d", i, k, binary.BigEndian.Uint32(rb))
		}
	}
	k, _, err := to.ReadFromUDPAddrPort(rb)
	if err != nil || !bytes.Equal(rb[:k], big) {
		t.Fatalf("large packet: %d bytes, %v", k, err)
	}
}

// TestSenderBound: with the writer stalled, the queue holds sendQueue
// packets and a writer of one more waits until the queue is taken; once
// stopped, the sender refuses packets and wakes the waiting writer.
func TestSenderBound(t *testing.T) {
	from, to := udpPair(t)
	s := newSender(from) // not running: nothing leaves the queue
	dst := to.LocalAddr().(*net.UDPAddr).AddrPort()
	p := make([]byte, 100)
	for range sendQueue {
		if _, err := s.send(p, dst); err != nil {
			t.Fatal(err)
		}
	}
	blocked := make(chan error, 1)
	go func() {
		_, err := s.send(p, dst)
		blocked <- err
	}()
	select {
	case err := <-blocked:
		t.Fatalf("a packet beyond the queue's bound was queued: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	s.mu.Lock()
	n := len(s.pending)
	s.mu.Unlock()
	if n != sendQueue {
		t.Fatalf("queued %d, want %d", n, sendQueue)
	}
	s.close()
	if err := <-blocked; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("waiting writer after close: %v", err)
	}
	if _, err := s.send(p, dst); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after stop: %v", err)
	}
}
