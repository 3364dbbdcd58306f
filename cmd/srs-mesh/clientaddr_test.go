package main

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/srs-mesh/srs-mesh/test/testkit"
)

func TestParseTrustedProxies(t *testing.T) {
	got, err := parseTrustedProxies([]string{"10.0.0.0/8", " 192.168.1.7 ", "2001:db8::/32", "", "::ffff:172.16.0.0/108", "10.1.2.3/16"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.168.1.7/32", "2001:db8::/32", "172.16.0.0/12", "10.1.0.0/16"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("prefix %d: %s, want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "fe80::1%eth0", "::ffff:1.2.3.4/64", "10.0.0.0/8,", "0.0.0.0/0", "::/0", "::ffff:0.0.0.0/96"} {
		if _, err := parseTrustedProxies([]string{bad}); err == nil || !strings.Contains(err.Error(), "--trusted-proxies") {
			t.Errorf("%q: error %v", bad, err)
		}
	}
}

func TestNewClientAddrsFlags(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	ok := serveOptions{trustedProxies: []string{"10.0.0.0/8"}, forwardedHeader: "forwarded", proxyProtocol: []string{"RTMP", "api", "rtmp"}}
	c, err := newClientAddrs(ok, log)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.proxyProtocol, ",") != "rtmp,api" || c.forwarded.Header.String() != "Forwarded" {
		t.Fatalf("got %+v", c)
	}
	for _, tc := range []struct {
		o    serveOptions
		want string
	}{
		{serveOptions{forwardedHeader: "X-Forwarded-For", proxyProtocol: []string{"rtmp"}}, "--proxy-protocol needs --trusted-proxies"},
		{serveOptions{forwardedHeader: "X-Forwarded-For", trustedProxies: []string{"10.0.0.0/8"}, proxyProtocol: []string{"srt"}}, `--proxy-protocol: unknown listener "srt"`},
		{serveOptions{forwardedHeader: "X-Real-IP"}, "--forwarded-header"},
		{serveOptions{forwardedHeader: "X-Forwarded-For", trustedProxies: []string{"nope"}}, "--trusted-proxies"},
	} {
		if _, err := newClientAddrs(tc.o, log); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.o, err, tc.want)
		}
	}
	// No flags: nobody is trusted and no listener changes.
	c, err = newClientAddrs(serveOptions{forwardedHeader: "X-Forwarded-For"}, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, name := range proxyProtocolPorts {
		if c.listen(name, ln) != ln {
			t.Errorf("%s wrapped without --proxy-protocol", name)
		}
	}
}

// An HTTP port built as serve builds it (PROXY protocol listener, connection
// cap, forwarding header): the handler sees the client the trusted
// balancer's PROXY header names, then the client a trusted proxy's
// X-Forwarded-For names, and the cap still holds.
func TestClientAddrsHTTPPort(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	c, err := newClientAddrs(serveOptions{trustedProxies: []string{"127.0.0.1/32", "198.51.100.0/24"},
		forwardedHeader: "X-Forwarded-For", proxyProtocol: []string{"http"}}, log)
	if err != nil {
		t.Fatal(err)
	}
	lim := httpLimits{readTimeout: 10 * time.Second, idleTimeout: time.Minute, maxConns: 2}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RemoteAddr) })
	p := httpPart("test", "http", c.listen("http", ln), c.handler(h), lim)
	go p.serve()
	defer p.close()

	ask := func(header, xff string) (string, error) {
		t.Helper()
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		req := header + "GET / HTTP/1.1\r\nHost: x\r\n"
		if xff != "" {
			req += "X-Forwarded-For: " + xff + "\r\n"
		}
		io.WriteString(nc, req+"Connection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), nil
	}
	for _, tc := range []struct{ header, xff, want string }{
		{"PROXY TCP4 203.0.113.7 127.0.0.1 50000 80\r\n", "", "203.0.113.7:50000"},
		// The PROXY header names an untrusted client: its X-Forwarded-For is ignored.
		{"PROXY TCP4 203.0.113.7 127.0.0.1 50000 80\r\n", "192.0.2.1", "203.0.113.7:50000"},
		// It names a trusted proxy: that proxy's X-Forwarded-For is read.
		{"PROXY TCP4 198.51.100.2 127.0.0.1 50000 80\r\n", "192.0.2.1, 192.0.2.9", "192.0.2.9:0"},
		{"PROXY UNKNOWN\r\n", "192.0.2.9", "192.0.2.9:0"},
	} {
		got, err := ask(tc.header, tc.xff)
		if err != nil || got != tc.want {
			t.Errorf("%q with X-Forwarded-For %q: handler saw %q (%v), want %s", tc.header, tc.xff, got, err, tc.want)
		}
	}
	// A trusted peer without a header is refused (net/http answers the
	// read error 400 and closes); the handler never sees it.
	if got, err := ask("", "192.0.2.9"); err == nil && !strings.HasPrefix(got, "400 Bad Request") {
		t.Errorf("a request without a PROXY header was answered: %q", got)
	}
	if v := counterValue(t, c.refused, "missing"); v != 1 {
		t.Errorf("refused{missing} = %v, want 1", v)
	}
	// The connection cap holds over PROXY protocol connections.
	var held []net.Conn
	for range 2 {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		io.WriteString(nc, "PROXY UNKNOWN\r\n")
		held = append(held, nc)
	}
	testkit.WaitFor(t, 10*time.Second, "the cap refusing a third connection", func() bool {
		got, err := ask("PROXY UNKNOWN\r\n", "")
		return err == nil && strings.Contains(got, "too many connections")
	})
}

// counterValue is the value of the vec's counter whose reason label is
// reason, or -1.
func counterValue(t *testing.T, vec *prometheus.CounterVec, reason string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(vec)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}
