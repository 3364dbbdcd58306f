package srt

import (
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkRelay sends SRT-shaped data packets (1316-byte payload, the
// usual 7 TS packets) through one established session and, for
// comparison, directly to the same UDP sink, in the same run:
//
//	direct    sender -> sink
//	upstream  caller -> server listener -> session socket -> origin
//	downstream origin -> session socket -> server listener -> caller
//
// A window of packets in flight (credits returned by the receiver) keeps
// the loopback sockets from dropping, so pkts/s is delivered throughput. cpu-ns/pkt is the whole process
// (sender and sink included, as in direct); the difference to direct is
// the server's cost.
func BenchmarkRelay(b *testing.B) {
	b.Run("direct", func(b *testing.B) {
		sink := startFakeOrigin(b, &fakeOrigin{countOnly: true, credit: make(chan struct{}, 2*window)})
		c, err := net.DialUDP("udp", nil, sink.pc.LocalAddr().(*net.UDPAddr))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		blast(b, c, fakeOriginSocket, &sink.dataCount, sink.credit)
	})
	b.Run("upstream", func(b *testing.B) {
		origin := startFakeOrigin(b, &fakeOrigin{countOnly: true, credit: make(chan struct{}, 2*window)})
		_, proxy := startServer(b, Config{Router: staticRouter(origin.addr())})
		c := newCaller(b, proxy, 0xbe0001)
		c.send(c.conclusion(c.induct(), hsreqExt(), sidExt("live/bench")))
		if c.read(3*time.Second) == nil {
			b.Fatal("no conclusion response")
		}
		blast(b, c.c, fakeOriginSocket, &origin.dataCount, origin.credit)
	})
	b.Run("downstream", func(b *testing.B) {
		origin := startFakeOrigin(b, &fakeOrigin{countOnly: true, credit: make(chan struct{}, 2*window)})
		_, proxy := startServer(b, Config{Router: staticRouter(origin.addr())})
		c := newCaller(b, proxy, 0xbe0002)
		c.send(c.conclusion(c.induct(), hsreqExt(), sidExt("live/bench")))
		if c.read(3*time.Second) == nil {
			b.Fatal("no conclusion response")
		}
		_, _, leg := origin.snapshot()
		var got atomic.Int64
		credit := make(chan struct{}, 2*window)
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, maxPacket)
			for {
				c.c.SetReadDeadline(time.Time{})
				if _, err := c.c.Read(buf); err != nil {
					return
				}
				got.Add(1)
				select {
				case credit <- struct{}{}:
				default:
				}
			}
		}()
		up := &addrWriter{pc: origin.pc, to: leg}
		blast(b, up, c.sid, &got, credit)
		c.c.Close()
		<-done
	})
}

type packetWriter interface{ Write([]byte) (int, error) }

type addrWriter struct {
	pc *net.UDPConn
	to netip.AddrPort
}

func (w *addrWriter) Write(b []byte) (int, error) { return w.pc.WriteToUDPAddrPort(b, w.to) }

// window is the number of packets a benchmark keeps in flight.
const window = 32

// blast sends b.N data packets to dest through w, keeping at most window
// packets unacknowledged by the receiver's credits, and reports throughput,
// CPU and loss. A credit that does not come within 50 ms is written off as
// a lost datagram.
func blast(b *testing.B, w packetWriter, dest uint32, received *atomic.Int64, credit <-chan struct{}) {
	pkt := dataPacket(dest, 0, 1316)
	base := received.Load()
	stall := time.NewTimer(time.Hour)
	defer stall.Stop()
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	inflight := 0
	for i := 0; i < b.N; i++ {
		if inflight >= window {
			stall.Reset(50 * time.Millisecond)
			select {
			case <-credit:
				inflight--
			case <-stall.C:
				inflight = 0
			}
			for drained := false; !drained; {
				select {
				case <-credit:
					inflight--
				default:
					drained = true
				}
			}
			inflight = max(inflight, 0)
		}
		pkt[3] = byte(i)
		if _, err := w.Write(pkt); err != nil {
			b.Fatal(err)
		}
		inflight++
	}
	sent := int64(b.N)
	deadline := time.Now().Add(time.Second)
	for received.Load()-base < sent && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	delivered := min(received.Load()-base, sent)
	b.ReportMetric(float64(delivered)/elapsed.Seconds(), "pkts/s")
	b.ReportMetric(float64(cpu)/float64(sent), "cpu-ns/pkt")
	b.ReportMetric(100*float64(sent-delivered)/float64(sent), "loss%")
}

// cpuTime is the process's user+system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
