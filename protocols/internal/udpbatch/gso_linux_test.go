//go:build linux

package udpbatch

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// segmentBatch is 20 datagrams of 1,316 bytes and one of 500 to to, each
// filled with its index.
func segmentBatch(to netip.AddrPort) []Msg {
	var ms []Msg
	for i := range 21 {
		n := 1316
		if i == 20 {
			n = 500
		}
		p := bytes.Repeat([]byte{byte(i)}, n)
		ms = append(ms, Msg{Buf: p, N: n, Addr: to})
	}
	return ms
}

func sameDatagrams(t *testing.T, got, want []Msg) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d datagrams, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i].Payload(), want[i].Payload()) {
			t.Fatalf("datagram %d: %d bytes starting %v, want %d bytes of %d", i, got[i].N, got[i].Payload()[:min(got[i].N, 4)], want[i].N, i)
		}
	}
}

// TestGSOToPlainReceiver: a segmented batch arrives at a plain socket as
// the datagrams sent, with their boundaries, including runs broken by
// another destination and by a size change.
func TestGSOToPlainReceiver(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	other := listen(t, "udp4", "127.0.0.1:0")
	cli := listen(t, "udp4", "127.0.0.1:0")
	w := NewWriterGSO(cli, 64)
	if !w.Segmenting() {
		t.Skip("the kernel has no UDP_SEGMENT")
	}
	to := srv.LocalAddr().(*net.UDPAddr).AddrPort()
	ms := segmentBatch(to)
	// One to another socket in the middle, then a bigger one: runs end.
	ms = append(ms[:10], append([]Msg{{Buf: []byte("elsewhere"), N: 9, Addr: other.LocalAddr().(*net.UDPAddr).AddrPort()}}, ms[10:]...)...)
	big := bytes.Repeat([]byte{0xee}, 1400)
	ms = append(ms, Msg{Buf: big, N: len(big), Addr: to}, Msg{Buf: big, N: len(big), Addr: to})
	sent, n, err := w.Write(ms)
	want := 0
	for _, m := range ms {
		want += m.N
	}
	if err != nil || sent != len(ms) || n != want {
		t.Fatalf("sent %d of %d (%d bytes of %d): %v", sent, len(ms), n, want, err)
	}
	var toSrv []Msg
	for _, m := range ms {
		if m.Addr == to {
			toSrv = append(toSrv, m)
		}
	}
	sameDatagrams(t, readAll(t, NewReader(srv, 8, 2048), srv, len(toSrv)), toSrv)
	if got := readAll(t, NewReader(other, 8, 2048), other, 1); string(got[0].Payload()) != "elsewhere" {
		t.Fatalf("other socket got %q", got[0].Payload())
	}
	if w.FellBack() {
		t.Fatal("the Writer fell back on loopback")
	}
}

// TestGROSplit: a segmented send to a GRO reader arrives coalesced, and the
// Reader hands over the datagrams as sent, across several Reads when they
// are more than its batch, and through ReadEach.
func TestGROSplit(t *testing.T) {
	for _, batch := range []int{64, 4} {
		srv := listen(t, "udp4", "127.0.0.1:0")
		cli, err := net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		r := NewReaderGRO(srv, batch, 2048)
		if !r.Coalescing() {
			t.Skip("the kernel has no UDP_GRO")
		}
		w := NewWriterGSO(cli, 64)
		if !w.Segmenting() {
			t.Skip("the kernel has no UDP_SEGMENT")
		}
		ms := segmentBatch(netip.AddrPort{})
		if sent, _, err := w.Write(ms); err != nil || sent != len(ms) {
			t.Fatalf("sent %d: %v", sent, err)
		}
		srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		var got []Msg
		coalesced := false
		for len(got) < len(ms) {
			out, err := r.Read()
			if err != nil {
				t.Fatalf("batch %d: read after %d: %v", batch, len(got), err)
			}
			if len(out) > batch {
				t.Fatalf("batch %d: Read returned %d", batch, len(out))
			}
			for _, s := range r.sys.seg[:r.sys.pn] {
				coalesced = coalesced || s > 0
			}
			for _, m := range out {
				if m.Addr != cli.LocalAddr().(*net.UDPAddr).AddrPort() {
					t.Fatalf("from %v, want %v", m.Addr, cli.LocalAddr())
				}
				got = append(got, Msg{Buf: append([]byte(nil), m.Payload()...), N: m.N})
			}
		}
		if !coalesced {
			t.Fatalf("batch %d: no datagram arrived coalesced", batch)
		}
		sameDatagrams(t, got, ms)

		// ReadEach, twice over.
		for range 2 {
			if _, _, err := w.Write(ms); err != nil {
				t.Fatal(err)
			}
		}
		got = got[:0]
		err = r.ReadEach(func(out []Msg) bool {
			if len(out) > batch {
				t.Errorf("batch %d: handed %d", batch, len(out))
			}
			for _, m := range out {
				got = append(got, Msg{Buf: append([]byte(nil), m.Payload()...), N: m.N})
			}
			return len(got) < 2*len(ms)
		})
		if err != nil {
			t.Fatal(err)
		}
		sameDatagrams(t, got, append(append([]Msg(nil), ms...), ms...))
	}
}

// TestGROPlainSenders: datagrams that were not coalesced (different
// senders and sizes) pass a GRO reader unchanged.
func TestGROPlainSenders(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	r := NewReaderGRO(srv, 8, 2048)
	if !r.Coalescing() {
		t.Skip("the kernel has no UDP_GRO")
	}
	var want []string
	for i := range 3 {
		c, err := net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for j := range 4 {
			p := bytes.Repeat([]byte{byte('a' + i)}, 1+j)
			c.Write(p)
			want = append(want, string(p))
		}
	}
	got := readAll(t, r, srv, len(want))
	for i := range got {
		if string(got[i].Buf) != want[i] {
			t.Fatalf("datagram %d: %q, want %q", i, got[i].Buf, want[i])
		}
	}
}

// TestGSOFallback forces the kernel to refuse a segmented send (more
// segments than it takes): the Writer stops segmenting, sends the run
// datagram by datagram, and says so.
func TestGSOFallback(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	cli := listen(t, "udp4", "127.0.0.1:0")
	if _, _, err := SetBuffers(srv, 1<<20); err != nil {
		t.Fatal(err)
	}
	w := NewWriterGSO(cli, 256)
	if !w.Segmenting() {
		t.Skip("the kernel has no UDP_SEGMENT")
	}
	w.sys.maxSegs = 256 // beyond the kernel's limit (64, or 128 since 6.10)
	to := srv.LocalAddr().(*net.UDPAddr).AddrPort()
	var ms []Msg
	for i := range 200 {
		p := bytes.Repeat([]byte{byte(i)}, 100)
		ms = append(ms, Msg{Buf: p, N: len(p), Addr: to})
	}
	sent, n, err := w.Write(ms)
	if err != nil || sent != len(ms) || n != 200*100 {
		t.Fatalf("sent %d (%d bytes): %v", sent, n, err)
	}
	if w.Segmenting() || !w.FellBack() {
		t.Fatalf("after a refused segmented send: Segmenting %v, FellBack %v", w.Segmenting(), w.FellBack())
	}
	sameDatagrams(t, readAll(t, NewReader(srv, 64, 2048), srv, len(ms)), ms)
	// Later batches go datagram by datagram too.
	if sent, _, err := w.Write(ms[:10]); err != nil || sent != 10 {
		t.Fatalf("after fallback: sent %d: %v", sent, err)
	}
	sameDatagrams(t, readAll(t, NewReader(srv, 64, 2048), srv, 10), ms[:10])
}

// TestGROBound: a GRO Reader's super-packet buffers are bounded whatever
// its batch.
func TestGROBound(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	r := NewReaderGRO(srv, 1024, 2048)
	if !r.Coalescing() {
		t.Skip("the kernel has no UDP_GRO")
	}
	mem := 0
	for _, m := range r.sys.msgs {
		mem += cap(m.Buf)
	}
	if len(r.sys.msgs) > groSlots || mem > groSlots*groSlotSize {
		t.Fatalf("%d slots, %d bytes", len(r.sys.msgs), mem)
	}
}

// TestGSOGROAllocs: a segmented write and a coalesced read allocate
// nothing.
func TestGSOGROAllocs(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	cli := listen(t, "udp4", "127.0.0.1:0")
	r := NewReaderGRO(srv, 64, 2048)
	w := NewWriterGSO(cli, 64)
	if !r.Coalescing() || !w.Segmenting() {
		t.Skip("the kernel has no UDP_GRO or UDP_SEGMENT")
	}
	ms := segmentBatch(srv.LocalAddr().(*net.UDPAddr).AddrPort())
	srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	allocs := testing.AllocsPerRun(100, func() {
		if sent, _, err := w.Write(ms); err != nil || sent != len(ms) {
			t.Fatalf("sent %d: %v", sent, err)
		}
		for got := 0; got < len(ms); {
			out, err := r.Read()
			if err != nil {
				t.Fatal(err)
			}
			got += len(out)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per batch, want 0", allocs)
	}
}

// cmsg builds one control message as the kernel writes it.
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func cmsgCases() []struct {
	name string
	b    []byte
	want cmsgs
} {
	ovfl := cmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, u32(7))
	gro := cmsg(unix.SOL_UDP, unix.UDP_GRO, u32(1316))
	short := cmsg(unix.SOL_UDP, unix.UDP_GRO, []byte{1, 2})
	bad := append([]byte(nil), gro...)
	(*unix.Cmsghdr)(unsafe.Pointer(&bad[0])).SetLen(1 << 20) // longer than the buffer
	neg := cmsg(unix.SOL_UDP, unix.UDP_GRO, u32(0xffffffff))
	return []struct {
		name string
		b    []byte
		want cmsgs
	}{
		{"empty", nil, cmsgs{}},
		{"drops", ovfl, cmsgs{drops: 7, hasDrops: true}},
		{"gro", gro, cmsgs{seg: 1316}},
		{"both", append(append([]byte(nil), ovfl...), gro...), cmsgs{drops: 7, hasDrops: true, seg: 1316}},
		{"gro first", append(append([]byte(nil), gro...), ovfl...), cmsgs{drops: 7, hasDrops: true, seg: 1316}},
		{"unknown then gro", append(cmsg(unix.SOL_IP, unix.IP_TOS, []byte{1}), gro...), cmsgs{seg: 1316}},
		{"short data", short, cmsgs{}},
		{"length past the end", bad, cmsgs{}},
		{"negative size", neg, cmsgs{}},
		{"truncated header", gro[:unix.SizeofCmsghdr-1], cmsgs{}},
		{"truncated data", gro[:unix.CmsgLen(0)+2], cmsgs{}},
	}
}

func TestParseCmsgs(t *testing.T) {
	for _, tc := range cmsgCases() {
		if got := parseCmsgs(tc.b); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func FuzzParseCmsgs(f *testing.F) {
	for _, tc := range cmsgCases() {
		f.Add(tc.b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c := parseCmsgs(b)
		if c.seg < 0 {
			t.Fatalf("negative segment size %d", c.seg)
		}
	})
}

// TestGSORefusedRun: a pending ICMP error refuses the run it meets; as in
// a plain batch, one datagram is lost and the rest go.
func TestGSORefusedRun(t *testing.T) {
	for _, gso := range []bool{false, true} {
		gone := listen(t, "udp4", "127.0.0.1:0")
		cli, err := net.DialUDP("udp4", nil, gone.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		gone.Close()
		w := NewWriter(cli, 16)
		if gso {
			if w = NewWriterGSO(cli, 16); !w.Segmenting() {
				t.Skip("the kernel has no UDP_SEGMENT")
			}
		}
		ms := segmentBatch(netip.AddrPort{})[:10]
		deadline := time.Now().Add(5 * time.Second)
		for {
			sent, _, err := w.Write(ms)
			if err != nil {
				if sent != len(ms)-1 {
					t.Fatalf("gso %v: a refused batch sent %d of %d: %v", gso, sent, len(ms), err)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("gso %v: no ICMP error came back", gso)
			}
		}
		if gso && (!w.Segmenting() || w.FellBack()) {
			t.Fatal("a refused run turned segmentation off")
		}
	}
}

// BenchmarkBurst sends bursts of 64 SRT-sized datagrams (1,316 bytes) to
// one destination over loopback and reads them: plain batches, GSO on
// send to a plain receiver, and GSO on send with GRO on receive.
func BenchmarkBurst(b *testing.B) {
	for _, tc := range []struct {
		name     string
		gso, gro bool
	}{{"plain", false, false}, {"gso", true, false}, {"gso-gro", true, true}} {
		b.Run(tc.name, func(b *testing.B) {
			srv := listen(b, "udp4", "127.0.0.1:0")
			cli := listen(b, "udp4", "127.0.0.1:0")
			SetBuffers(srv, 4<<20)
			r, w := NewReader(srv, 64, 2048), NewWriter(cli, 64)
			if tc.gso {
				if w = NewWriterGSO(cli, 64); !w.Segmenting() {
					b.Skip("the kernel has no UDP_SEGMENT")
				}
			}
			if tc.gro {
				if r = NewReaderGRO(srv, 64, 2048); !r.Coalescing() {
					b.Skip("the kernel has no UDP_GRO")
				}
			}
			to := srv.LocalAddr().(*net.UDPAddr).AddrPort()
			ms := make([]Msg, 64)
			for i := range ms {
				ms[i] = Msg{Buf: make([]byte, 1316), N: 1316, Addr: to}
			}
			srv.SetReadDeadline(time.Now().Add(time.Minute))
			b.SetBytes(int64(64 * 1316))
			b.ResetTimer()
			for range b.N {
				if sent, _, err := w.Write(ms); err != nil || sent != len(ms) {
					b.Fatalf("sent %d: %v", sent, err)
				}
				for got := 0; got < len(ms); {
					out, err := r.Read()
					if err != nil {
						b.Fatal(err)
					}
					got += len(out)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ms)), "ns/datagram")
		})
	}
}
