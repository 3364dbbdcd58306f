package srt

import (
	"net"
	"net/netip"
	"runtime"
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
// A window of packets in flight keeps the loopback sockets from dropping,
// so pkts/s is delivered throughput. cpu-ns/pkt is the whole process
// (sender and sink included, as in direct); the difference to direct is
// the server's cost.
func BenchmarkRelay(b *testing.B) {
	b.Run("direct", func(b *testing.B) {
		sink := startFakeOrigin(b, &fakeOrigin{countOnly: true})
		c, err := net.DialUDP("udp", nil, sink.pc.LocalAddr().(*net.UDPAddr))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		blast(b, c, fakeOriginSocket, &sink.dataCount)
	})
	b.Run("upstream", func(b *testing.B) {
		origin := startFakeOrigin(b, &fakeOrigin{countOnly: true})
		_, proxy := startServer(b, Config{Router: staticRouter(origin.addr())})
		c := newCaller(b, proxy, 0xbe0001)
		c.send(c.conclusion(c.induct(), hsreqExt(), sidExt("live/bench")))
		if c.read(3*time.Second) == nil {
			b.Fatal("no conclusion response")
		}
		blast(b, c.c, fakeOriginSocket, &origin.dataCount)
	})
	b.Run("downstream", func(b *testing.B) {
		origin := startFakeOrigin(b, &fakeOrigin{countOnly: true})
		_, proxy := startServer(b, Config{Router: staticRouter(origin.addr())})
		c := newCaller(b, proxy, 0xbe0002)
		c.send(c.conclusion(c.induct(), hsreqExt(), sidExt("live/bench")))
		if c.read(3*time.Second) == nil {
			b.Fatal("no conclusion response")
		}
		_, _, leg := origin.snapshot()
		var got atomic.Int64
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
			}
		}()
		up := &addrWriter{pc: origin.pc, to: leg}
		blast(b, up, c.sid, &got)
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

// blast sends b.N data packets to dest through w, keeping at most window
// packets ahead of what the sink counted, and reports throughput and CPU.
func blast(b *testing.B, w packetWriter, dest uint32, received *atomic.Int64) {
	const window = 64
	pkt := dataPacket(dest, 0, 1316)
	base := received.Load()
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	var sent, written int64 // written off: presumed lost
	for i := 0; i < b.N; i++ {
		stall := time.Now()
		for sent-written-(received.Load()-base) >= window {
			if time.Since(stall) > 50*time.Millisecond {
				// Datagrams were lost; do not wait for them forever.
				written = sent - (received.Load() - base)
				break
			}
			runtime.Gosched()
		}
		pkt[3] = byte(i)
		if _, err := w.Write(pkt); err != nil {
			b.Fatal(err)
		}
		sent++
	}
	deadline := time.Now().Add(2 * time.Second)
	for received.Load()-base < sent && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	elapsed := time.Since(start)
	b.StopTimer()
	delivered := received.Load() - base
	b.ReportMetric(float64(delivered)/elapsed.Seconds(), "pkts/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/pkt")
	b.ReportMetric(100*float64(sent-min(delivered, sent))/float64(sent), "loss%")
}

// cpuTime is the process's user+system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
