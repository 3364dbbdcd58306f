package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// Client addresses behind a load balancer (--trusted-proxies,
// --forwarded-header, --proxy-protocol). The tests reach the node from two
// loopback addresses: 127.0.0.1 plays the trusted balancer, 127.0.0.2 a
// host outside --trusted-proxies.

// fwdClient is an HTTP client whose connections leave from the local
// address src (127.0.0.1 or 127.0.0.2).
func fwdClient(src string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// fwdOffer posts a WHEP offer that is not valid SDP to the node's API port
// from client with the given headers and returns the status: 400 when the
// per-address limit let it through, 429 when it refused it.
func fwdOffer(t *testing.T, client *http.Client, nd *harness.Node, headers map[string]string) int {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+nd.APIAddr+"/rtc/v1/whep/?app=live&stream=s", strings.NewReader("v=0\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// TestAttackForwardedForPerClient: with --trusted-proxies 127.0.0.1/32, the
// WebRTC offer limit (2 offers, then 0.01/s) counts each forwarded client on
// its own. The abusive client is limited, and cannot escape by forging the
// left part of the chain, by switching to the Forwarded header, or by
// sending X-Forwarded-For from outside the trusted range; another forwarded
// client and the balancer's own requests still get through.
func TestAttackForwardedForPerClient(t *testing.T) {
	c := startProtocolCluster(t, 1, nil, "--trusted-proxies", "127.0.0.1/32", "--rtc-offer-rate", "0.01", "--rtc-offer-burst", "2")
	nd := c.nodes[0]
	lb, outside := fwdClient("127.0.0.1"), fwdClient("127.0.0.2")
	xff := func(v string) map[string]string { return map[string]string{"X-Forwarded-For": v} }

	const abuser, other = "203.0.113.10", "203.0.113.20"
	for i := range 2 {
		if got := fwdOffer(t, lb, nd, xff(abuser)); got != http.StatusBadRequest {
			t.Fatalf("abusive client's offer %d within its burst: %d", i, got)
		}
	}
	for _, h := range []map[string]string{
		xff(abuser),
		// The client forged an X-Forwarded-For; the balancer appended the
		// address it saw. Only the rightmost untrusted address counts.
		xff("198.51.100.1, " + abuser),
		xff("198.51.100.2, 127.0.0.1, " + abuser),
		// Forwarded is not the header the balancer writes: ignored.
		{"X-Forwarded-For": abuser, "Forwarded": "for=198.51.100.3"},
	} {
		if got := fwdOffer(t, lb, nd, h); got != http.StatusTooManyRequests {
			t.Fatalf("abusive client with %v: %d, want 429", h, got)
		}
	}
	// Another client behind the same balancer still gets through, and so
	// does the balancer itself (a request naming no client).
	for i := range 2 {
		if got := fwdOffer(t, lb, nd, xff(other)); got != http.StatusBadRequest {
			t.Fatalf("other forwarded client's offer %d: %d, want 400", i, got)
		}
	}
	if got := fwdOffer(t, lb, nd, nil); got != http.StatusBadRequest {
		t.Fatalf("the balancer's own offer: %d, want 400", got)
	}
	// A host outside --trusted-proxies is its own client, whatever
	// X-Forwarded-For it sends.
	for i := range 2 {
		if got := fwdOffer(t, outside, nd, xff(other)); got != http.StatusBadRequest {
			t.Fatalf("outside host's offer %d: %d, want 400", i, got)
		}
	}
	for _, v := range []string{"203.0.113.31", "203.0.113.32", "127.0.0.1"} {
		if got := fwdOffer(t, outside, nd, xff(v)); got != http.StatusTooManyRequests {
			t.Fatalf("outside host claiming %s: %d, want 429", v, got)
		}
	}
	const limited = `srs_mesh_session_failures_total{proto="webrtc",reason="rate_limited"}`
	if v := nodeMetric(t, nd, limited); v != 7 {
		t.Fatalf("%s = %v, want 7", limited, v)
	}
}

// TestAttackForwardedForPerClientAppended: with --forwarded-header
// Forwarded, behind a balancer that appends its element to the client's
// Forwarded line (nginx's "$http_forwarded, for=$remote_addr"), a client
// whose line leaves a quote open, so that it would swallow the balancer's
// element, names no address: the balancer stands, and once the balancer's
// own burst is spent such offers are refused like any other of its own.
func TestAttackForwardedForPerClientAppended(t *testing.T) {
	c := startProtocolCluster(t, 1, nil, "--trusted-proxies", "127.0.0.1/32", "--forwarded-header", "Forwarded",
		"--rtc-offer-rate", "0.01", "--rtc-offer-burst", "2")
	nd := c.nodes[0]
	lb := fwdClient("127.0.0.1")
	// appended is the line the balancer sends: the client's Forwarded
	// line sent ("" for none), then the balancer's element elem.
	appended := func(sent, elem string) map[string]string {
		if sent == "" {
			return map[string]string{"Forwarded": elem}
		}
		return map[string]string{"Forwarded": sent + ", " + elem}
	}
	const abuser, other = "203.0.113.10", "203.0.113.20"
	for i := range 2 {
		if got := fwdOffer(t, lb, nd, appended("", "for="+abuser)); got != http.StatusBadRequest {
			t.Fatalf("abusive client's offer %d within its burst: %d", i, got)
		}
		if got := fwdOffer(t, lb, nd, nil); got != http.StatusBadRequest {
			t.Fatalf("the balancer's own offer %d: %d, want 400", i, got)
		}
	}
	for _, h := range []map[string]string{
		appended("", "for="+abuser),
		appended("for=198.51.100.1", "for="+abuser),
		// Quotes the client left open: each names a new address to a
		// parser that lets the quote swallow the balancer's element.
		appended(`for=198.51.100.2;x="`, "for="+abuser),
		appended(`for=198.51.100.3;x="`, `for="`+abuser+`:4711"`),
		appended(`for=198.51.100.4;x="\`, "for="+abuser),
		appended(`for="198.51.100.5`, "for="+abuser),
	} {
		if got := fwdOffer(t, lb, nd, h); got != http.StatusTooManyRequests {
			t.Fatalf("abusive client with %v: %d, want 429", h, got)
		}
	}
	if got := fwdOffer(t, lb, nd, appended("", "for="+other)); got != http.StatusBadRequest {
		t.Fatalf("other forwarded client's offer: %d, want 400", got)
	}
	const limited = `srs_mesh_session_failures_total{proto="webrtc",reason="rate_limited"}`
	if v := nodeMetric(t, nd, limited); v != 6 {
		t.Fatalf("%s = %v, want 6", limited, v)
	}
}

// TestAttackForgedForwardedFor: with no --trusted-proxies, a client that
// sends a new X-Forwarded-For, Forwarded and X-Real-IP with every offer is
// still one address: limited after its burst, while a client at another
// address gets through.
func TestAttackForgedForwardedFor(t *testing.T) {
	c := startProtocolCluster(t, 1, nil, "--rtc-offer-rate", "0.01", "--rtc-offer-burst", "2")
	nd := c.nodes[0]
	attacker, legit := fwdClient("127.0.0.1"), fwdClient("127.0.0.2")
	forged := func(i int) map[string]string {
		ip := "203.0.113." + string(rune('1'+i))
		return map[string]string{"X-Forwarded-For": ip, "Forwarded": "for=" + ip, "X-Real-IP": ip}
	}
	for i := range 2 {
		if got := fwdOffer(t, attacker, nd, forged(i)); got != http.StatusBadRequest {
			t.Fatalf("offer %d within the burst: %d", i, got)
		}
	}
	for i := 2; i < 6; i++ {
		if got := fwdOffer(t, attacker, nd, forged(i)); got != http.StatusTooManyRequests {
			t.Fatalf("offer %d with forged addresses %v: %d, want 429", i, forged(i), got)
		}
	}
	if got := fwdOffer(t, legit, nd, nil); got != http.StatusBadRequest {
		t.Fatalf("another client's offer: %d, want 400", got)
	}
}

// fwdBalancer is a TCP load balancer in PROXY protocol mode: every
// connection it accepts is relayed to target from 127.0.0.1 after a PROXY
// header naming the next of clients (version 1 for even connections, 2 for
// odd ones).
type fwdBalancer struct {
	ln      net.Listener
	target  string
	clients []netip.AddrPort
	wg      sync.WaitGroup
	mu      sync.Mutex
	n       int
	conns   []net.Conn
}

func startFwdBalancer(t *testing.T, target string, clients ...netip.AddrPort) *fwdBalancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fwdBalancer{ln: ln, target: target, clients: clients}
	b.wg.Add(1)
	go b.serve()
	t.Cleanup(b.close)
	return b
}

func (b *fwdBalancer) addr() string { return b.ln.Addr().String() }

func (b *fwdBalancer) serve() {
	defer b.wg.Done()
	for {
		cc, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		i := b.n
		b.n++
		b.conns = append(b.conns, cc)
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer cc.Close()
			uc, err := net.DialTimeout("tcp", b.target, 5*time.Second)
			if err != nil {
				return
			}
			defer uc.Close()
			b.mu.Lock()
			b.conns = append(b.conns, uc)
			b.mu.Unlock()
			cl := b.clients[i%len(b.clients)]
			// Written out by hand from HAProxy's specification, not with
			// the node's own encoder.
			var hdr []byte
			if i%2 == 0 {
				hdr = []byte("PROXY TCP4 " + cl.Addr().String() + " 127.0.0.1 " + strconv.Itoa(int(cl.Port())) + " 1935\r\n")
			} else {
				hdr = append([]byte("\r\n\r\n\x00\r\nQUIT\n"), 0x21, 0x11, 0, 12)
				ip := cl.Addr().As4()
				hdr = append(hdr, ip[:]...)
				hdr = append(hdr, 127, 0, 0, 1)
				hdr = append(hdr, byte(cl.Port()>>8), byte(cl.Port()), 1935>>8, 1935&0xff)
			}
			if _, err := uc.Write(hdr); err != nil {
				return
			}
			done := make(chan struct{}, 2)
			go func() { io.Copy(uc, cc); uc.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
			go func() { io.Copy(cc, uc); cc.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
			<-done
			<-done
		}()
	}
}

func (b *fwdBalancer) close() {
	b.ln.Close()
	b.mu.Lock()
	for _, c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// fwdRTMPHello sends an RTMP C0 and C1 on nc (after prefix) and returns the
// first byte of the answer, or the error that ended the connection.
func fwdRTMPHello(nc net.Conn, prefix []byte) (byte, error) {
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	msg := append(append([]byte(nil), prefix...), 3)
	msg = append(msg, make([]byte, 1536)...)
	if _, err := nc.Write(msg); err != nil {
		return 0, err
	}
	var s0 [1]byte
	if _, err := io.ReadFull(nc, s0[:]); err != nil {
		return 0, err
	}
	return s0[0], nil
}

// TestAttackProxyProtocolRTMP: --proxy-protocol rtmp with --trusted-proxies
// 127.0.0.1/32. A publish and plays through a balancer sending PROXY headers
// (v1 and v2) work, and the node logs the clients the headers name. A PROXY
// header from a host outside the trusted range is refused before the RTMP
// handshake and never names a client; the trusted balancer's connection
// without a header is refused too; a plain RTMP client outside the range is
// served as itself; and the stream keeps playing through the attack.
func TestAttackProxyProtocolRTMP(t *testing.T) {
	harness.Need(t, "ffmpeg", "nginx")
	o1 := harness.StartNginx(t, harness.NginxOptions{})
	c := startCluster(t, 1, "--origin", originFlag("o1", o1), "--trusted-proxies", "127.0.0.1/32", "--proxy-protocol", "rtmp")
	nd := c.nodes[0]
	testkit.WaitFor(t, 15*time.Second, "origin healthy", func() bool {
		var st mesh.Status
		return nd.Status(&st) == nil && len(st.Origins) == 1 && st.Origins[0].Healthy
	})
	publisher := netip.MustParseAddrPort("198.51.100.7:40001")
	player := netip.MustParseAddrPort("198.51.100.8:40002")
	b := startFwdBalancer(t, nd.RTMPAddr, publisher, player)

	pub := harness.PublishRTMP(t, "rtmp://"+b.addr()+"/live/pp")
	res := harness.PlayUntil(t, "rtmp://"+b.addr()+"/live/pp", 2*time.Second, 10, 30*time.Second)
	t.Logf("played %d frames through the balancer", res.VideoFrames)
	for _, cl := range []netip.AddrPort{publisher, player} {
		if !strings.Contains(nd.Logs(), "peer="+cl.String()) {
			t.Errorf("the node's log never names the client %s", cl)
		}
	}

	// A host outside the trusted range claims to be a balancer.
	outside := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	for _, hdr := range []string{
		"PROXY TCP4 203.0.113.66 127.0.0.1 50000 1935\r\n",
		"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xcb\x00\x71\x42\x7f\x00\x00\x01\xc3\x50\x07\x8f",
	} {
		nc, err := outside.Dial("tcp", nd.RTMPAddr)
		if err != nil {
			t.Fatal(err)
		}
		s0, err := fwdRTMPHello(nc, []byte(hdr))
		nc.Close()
		if err == nil {
			t.Fatalf("a PROXY header from an untrusted peer was answered (S0 %#x)", s0)
		}
		if !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("a PROXY header from an untrusted peer: %v, want the connection closed", err)
		}
	}
	// The trusted balancer's connection without a header is refused.
	nc, err := net.DialTimeout("tcp", nd.RTMPAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if s0, err := fwdRTMPHello(nc, nil); err == nil {
		t.Fatalf("a trusted peer's connection without a PROXY header was answered (S0 %#x)", s0)
	}
	nc.Close()
	// A plain client outside the range is served as itself.
	nc, err = outside.Dial("tcp", nd.RTMPAddr)
	if err != nil {
		t.Fatal(err)
	}
	if s0, err := fwdRTMPHello(nc, nil); err != nil || s0 != 3 {
		t.Fatalf("a plain RTMP client outside the trusted range: S0 %#x, %v", s0, err)
	}
	nc.Close()

	const refused = `srs_mesh_proxy_protocol_refused_total{listener="rtmp",reason="%s"}`
	testkit.WaitFor(t, 10*time.Second, "refusals counted", func() bool {
		return nodeMetric(t, nd, fmt.Sprintf(refused, "untrusted")) == 2 &&
			nodeMetric(t, nd, fmt.Sprintf(refused, "missing")) >= 1
	})
	if strings.Contains(nd.Logs(), "203.0.113.66") {
		t.Error("the address of an untrusted PROXY header reached the log")
	}
	// The real stream still plays through the balancer.
	harness.PlayUntil(t, "rtmp://"+b.addr()+"/live/pp", time.Second, 5, 30*time.Second)
	if pub.Exited() {
		t.Fatalf("publisher exited: %s", pub.Output())
	}
}

// isReset reports whether err is a connection reset by the peer.
func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

// TestAttackProxyProtocolHTTP: --proxy-protocol api with --trusted-proxies
// 127.0.0.1/32. Offers through a balancer sending PROXY headers are limited
// per client the headers name: one client is limited while another gets
// through, and an X-Forwarded-For sent by a client (not a trusted proxy) is
// ignored. A host outside the range that sends a PROXY header gets 400 and
// never reaches the handler; one that sends none is its own client.
func TestAttackProxyProtocolHTTP(t *testing.T) {
	c := startProtocolCluster(t, 1, nil, "--trusted-proxies", "127.0.0.1/32", "--proxy-protocol", "api",
		"--rtc-offer-rate", "0.01", "--rtc-offer-burst", "2")
	nd := c.nodes[0]
	abuser := startFwdBalancer(t, nd.APIAddr, netip.MustParseAddrPort("198.51.100.7:40001"))
	other := startFwdBalancer(t, nd.APIAddr, netip.MustParseAddrPort("198.51.100.8:40002"))
	via := func(b *fwdBalancer) *harness.Node {
		cp := *nd
		cp.APIAddr = b.addr()
		return &cp
	}
	direct, outside := fwdClient("127.0.0.1"), fwdClient("127.0.0.2")
	for i := range 2 {
		if got := fwdOffer(t, direct, via(abuser), map[string]string{"X-Forwarded-For": "203.0.113.1"}); got != http.StatusBadRequest {
			t.Fatalf("abusive client's offer %d within its burst: %d", i, got)
		}
	}
	if got := fwdOffer(t, direct, via(abuser), map[string]string{"X-Forwarded-For": "203.0.113.2"}); got != http.StatusTooManyRequests {
		t.Fatalf("abusive client past its burst, with a forged X-Forwarded-For: %d, want 429", got)
	}
	if got := fwdOffer(t, direct, via(other), nil); got != http.StatusBadRequest {
		t.Fatalf("another client through the balancer: %d, want 400", got)
	}

	// A PROXY header from outside the trusted range.
	outsideDial := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	nc, err := outsideDial.Dial("tcp", nd.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(nc, "PROXY TCP4 203.0.113.66 127.0.0.1 50000 1985\r\nPOST /rtc/v1/whep/?app=live&stream=s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nv=0\r\n")
	answer, _ := io.ReadAll(nc)
	if !strings.HasPrefix(string(answer), "HTTP/1.1 400 ") {
		t.Fatalf("a PROXY header from an untrusted peer: answered %q, want 400", answer)
	}
	// Without a header, that host is its own client.
	if got := fwdOffer(t, outside, nd, nil); got != http.StatusBadRequest {
		t.Fatalf("a plain client outside the range: %d, want 400", got)
	}
	if v := nodeMetric(t, nd, `srs_mesh_proxy_protocol_refused_total{listener="api",reason="untrusted"}`); v != 1 {
		t.Fatalf("untrusted refusals %v, want 1", v)
	}
	if v := nodeMetric(t, nd, `srs_mesh_session_failures_total{proto="webrtc",reason="rate_limited"}`); v != 1 {
		t.Fatalf("rate-limited offers %v, want 1", v)
	}
}

// TestAttackForwardedForToOrigin: the address a node gives an origin for a
// viewer (X-Forwarded-For and X-Real-IP, which SRS's hooks and logs read) is
// the client the trusted proxy named, never the chain a client forged; from
// a host outside --trusted-proxies it is that host, whatever it sends.
func TestAttackForwardedForToOrigin(t *testing.T) {
	type seen struct{ xff, realIP string }
	got := make(chan seen, 16)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Real-IP")}
		w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
		io.WriteString(w, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:2.0,\nfwd-0.ts\n")
	}))
	t.Cleanup(origin.Close)
	// The leader probes an origin's RTMP port with a TCP connect.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { probe.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := probe.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	flag := fmt.Sprintf("id=o1,ip=127.0.0.1,rtmp=%d,http=%d", probe.Addr().(*net.TCPAddr).Port, origin.Listener.Addr().(*net.TCPAddr).Port)
	c := startCluster(t, 1, "--origin", flag, "--trusted-proxies", "127.0.0.1/32", "--playlist-cache-ttl", "-1s")
	nd := c.nodes[0]
	testkit.WaitFor(t, 15*time.Second, "origin healthy", func() bool {
		var st mesh.Status
		return nd.Status(&st) == nil && len(st.Origins) == 1 && st.Origins[0].Healthy
	})
	for _, tc := range []struct {
		from, xff string
		want      string
	}{
		{"127.0.0.1", "198.51.100.1, 203.0.113.5", "203.0.113.5"},
		{"127.0.0.1", "203.0.113.6, 127.0.0.1", "203.0.113.6"},
		{"127.0.0.1", "", "127.0.0.1"},
		{"127.0.0.2", "203.0.113.5", "127.0.0.2"},
	} {
		req, _ := http.NewRequest("GET", "http://"+nd.HTTPAddr+"/live/fwd.m3u8", nil)
		if tc.xff != "" {
			req.Header.Set("X-Forwarded-For", tc.xff)
		}
		req.Header.Set("X-Real-IP", "192.0.2.99")
		resp, err := fwdClient(tc.from).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("from %s with %q: %d", tc.from, tc.xff, resp.StatusCode)
		}
		select {
		case s := <-got:
			if s.xff != tc.want || s.realIP != tc.want {
				t.Errorf("from %s with X-Forwarded-For %q: the origin saw X-Forwarded-For %q, X-Real-IP %q; want %s",
					tc.from, tc.xff, s.xff, s.realIP, tc.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("from %s: the request never reached the origin", tc.from)
		}
	}
}
