package rtmp

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/test/harness"
)

// repeatReader yields head once, then body n times, then io.EOF. With a
// constant timestamp delta every video message after the first encodes to
// the same bytes, so a long stream costs no memory.
type repeatReader struct {
	head, body []byte
	n          int
	off        int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	for len(r.head) == 0 {
		if r.n == 0 {
			return 0, io.EOF
		}
		r.head = r.body
		r.n--
	}
	n := copy(p, r.head)
	r.head = r.head[n:]
	return n, nil
}

// videoStream returns the chunked encoding of a first video message and of
// every following one (4 KiB payloads, 40 ms apart, client chunk size 4096
// as FFmpeg and OBS use).
func videoStream(size int) (head, body []byte) {
	var buf bytes.Buffer
	w := chunk.NewWriter(&buf, 64<<10)
	w.SetChunkSize(4096)
	m := chunk.Message{CSID: 6, Type: chunk.TypeVideo, StreamID: 1, Payload: payload(size)}
	w.WriteMessage(&m)
	m.Timestamp += 40
	w.WriteMessage(&m)
	w.Flush()
	head = bytes.Clone(buf.Bytes())
	buf.Reset()
	m.Timestamp += 40
	w.WriteMessage(&m)
	w.Flush()
	return head, bytes.Clone(buf.Bytes())
}

// relayLegs returns a source leg reading src and a destination leg writing
// to dst, as pump uses them, without connections.
func relayLegs(src io.Reader, dst io.Writer) (*leg, *leg) {
	in := &leg{r: chunk.NewReader(src, DefaultMaxMessageSize, readBufSize), w: chunk.NewWriter(io.Discard, writeBufSize)}
	out := &leg{r: chunk.NewReader(bytes.NewReader(nil), DefaultMaxMessageSize, readBufSize), w: chunk.NewWriter(dst, writeBufSize)}
	out.w.SetChunkSize(originChunkSize)
	return in, out
}

// TestRelayAllocs: relaying a message (read, re-chunk, write) allocates
// nothing once buffers have grown.
func TestRelayAllocs(t *testing.T) {
	head, body := videoStream(4096)
	src := &repeatReader{head: head, body: body, n: 10}
	in, out := relayLegs(src, io.Discard)
	if err := pump(in, out, 1, 7); err != io.EOF {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		src.n = 10
		if err := pump(in, out, 1, 7); err != io.EOF {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per 10 relayed messages", allocs)
	}
}

// BenchmarkRelayPump measures the relay loop on 4 KiB video messages: read
// and reassemble from 4096-byte chunks, map the stream id, re-chunk at
// 60000 bytes and write.
func BenchmarkRelayPump(b *testing.B) {
	for _, size := range []int{4096, 64 << 10} {
		b.Run(byteSize(size), func(b *testing.B) {
			head, body := videoStream(size)
			src := &repeatReader{head: head, body: body, n: b.N}
			in, out := relayLegs(src, io.Discard)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			if err := pump(in, out, 1, 7); err != io.EOF {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkRelayDirectCopy is the baseline: copying the same bytes with
// io.CopyBuffer, as a chunk-oblivious TCP proxy would.
func BenchmarkRelayDirectCopy(b *testing.B) {
	for _, size := range []int{4096, 64 << 10} {
		b.Run(byteSize(size), func(b *testing.B) {
			head, body := videoStream(size)
			src := &repeatReader{head: head, body: body, n: b.N}
			buf := make([]byte, readBufSize)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{src}, buf)
		})
	}
}

func byteSize(n int) string {
	if n >= 1<<10 {
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// BenchmarkNginx compares a Go publisher talking to a real nginx-rtmp
// origin directly and through the proxy, in the same run: set-up latency
// (TCP connect to Publish.Start) and publish throughput of 4 KiB video
// messages.
func BenchmarkNginx(b *testing.B) {
	n := harness.StartNginx(b, harness.NginxOptions{})
	_, proxy := startProxy(b, Config{Router: routeTo(n.RTMPAddr)})
	targets := []struct{ name, addr string }{{"direct", n.RTMPAddr}, {"proxy", proxy}}
	for _, tg := range targets {
		b.Run("setup/"+tg.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				p := dialBenchPeer(b, tg.addr)
				info, err := p.start("rtmp://"+tg.addr+"/live", "setup"+strconv.Itoa(i), true)
				if err != nil || info.String("code") != codePublishStart {
					b.Fatalf("%v %v", info, err)
				}
				p.nc.Close()
			}
		})
	}
	for _, tg := range targets {
		b.Run("publish/"+tg.name, func(b *testing.B) {
			p := dialBenchPeer(b, tg.addr)
			defer p.nc.Close()
			if info, err := p.start("rtmp://"+tg.addr+"/live", "tput-"+tg.name, true); err != nil || info.String("code") != codePublishStart {
				b.Fatalf("%v %v", info, err)
			}
			p.w.SetChunkSize(4096)
			// An AVC inter frame header, so the origin treats it as video.
			m := chunk.Message{CSID: 6, Type: chunk.TypeVideo, StreamID: 1, Payload: payload(4096)}
			m.Payload[0], m.Payload[1] = 0x27, 0x01
			p.nc.SetDeadline(time.Now().Add(time.Minute))
			b.SetBytes(4096)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			for i := 0; i < b.N; i++ {
				m.Timestamp += 40
				if err := p.w.WriteMessage(&m); err != nil {
					b.Fatal(err)
				}
			}
			if err := p.w.Flush(); err != nil {
				b.Fatal(err)
			}
			// CPU of this process (the client, plus the proxy when proxied)
			// per message; the difference between the two runs is the
			// proxy's cost.
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/msg")
		})
	}
}

func dialBenchPeer(b *testing.B, addr string) *testPeer {
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return dialed(b, nc)
}

// BenchmarkSetup measures publish set-up (TCP connect to Publish.Start)
// against an in-process origin, directly and through the proxy, so that
// the proxy's own cost is not hidden by an origin's latency.
func BenchmarkSetup(b *testing.B) {
	o := startFakeOrigin(b, "")
	_, proxy := startProxy(b, Config{Router: routeTo(o.Addr)})
	for _, tg := range []struct{ name, addr string }{{"direct", o.Addr}, {"proxy", proxy}} {
		b.Run(tg.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				p := dialBenchPeer(b, tg.addr)
				info, err := p.start("rtmp://"+tg.addr+"/live", "s"+strconv.Itoa(i), true)
				if err != nil || info.String("code") != codePublishStart {
					b.Fatalf("%v %v", info, err)
				}
				p.nc.Close()
				<-o.names
				<-o.tcURLs
			}
		})
	}
}

// processCPU is the user+system CPU time of this process in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// TestPublishRelayAllocs: the publish relay, with its failover bookkeeping
// (sequence header cache, leg failure check), allocates nothing per message
// while the origin leg is up.
func TestPublishRelayAllocs(t *testing.T) {
	head, body := videoStream(4096)
	src := &repeatReader{head: head, body: body, n: 10}
	in, out := relayLegs(src, io.Discard)
	p := &publisher{c: &conn{client: in, clientStream: 1}, cur: &originLeg{leg: out, streamID: 7}, curDone: make(chan error)}
	if err := p.run(); err != io.EOF {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		src.n = 10
		if err := p.run(); err != io.EOF {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per 10 relayed messages", allocs)
	}
}
