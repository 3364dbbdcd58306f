package e2e

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/amf0"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// TestSingleNode runs one node the way the README does: `srs-mesh serve`
// with no flag, no config file and no SRS_MESH_* variable, in a fresh
// working directory. It checks the defaults the README's flag table states
// for such a lone node (bootstrap-expect 1 and a leader of its own, the
// hostname as node id, ./srs-mesh-data, cluster ports and system API on
// loopback, client ports on every interface), that it answers the probe
// paths the Kubernetes manifests use, and that, as the README says, it
// cannot route a stream with no origin: a publish gets an RTMP error
// onStatus and the connection ends, instead of hanging.
//
// The node listens on the default ports, so they must be free on this
// machine while the test runs; the test says which one is not.
func TestSingleNode(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	const intro = "Run a single node on its embedded defaults"
	i := strings.Index(readme, intro)
	if i < 0 {
		t.Fatalf("the README no longer says %q; update this test", intro)
	}
	if cmd := strings.TrimSpace(fencedAfter(t, readme, intro)); cmd != "go run ./cmd/srs-mesh serve" {
		t.Fatalf("the README runs a single node with %q; update this test", cmd)
	}
	if !strings.Contains(readme, "That node has no origin yet, so it cannot route a stream.") {
		t.Error("the README no longer says that the single node cannot route a stream")
	}
	defaults := readmeServeDefaults(t, readme)

	// What the README's flag table promises a lone node without --token.
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	if got := defaults["node-id"]; got != "hostname" {
		t.Errorf("README: --node-id defaults to %q, want hostname", got)
	}
	if got := defaults["bootstrap-expect"]; got != "`1`" {
		t.Errorf("README: --bootstrap-expect defaults to %s, want `1`: a node alone must form a mesh", got)
	}
	dataDir := firstCode(defaults["data-dir"])
	if dataDir == "" {
		t.Fatalf("README: no default for --data-dir: %q", defaults["data-dir"])
	}
	type listener struct {
		flag   string
		protos []string
	}
	listeners := []listener{
		{"gossip-addr", []string{"tcp", "udp"}}, {"raft-addr", []string{"tcp"}}, {"system-api", []string{"tcp"}},
		{"rtmp", []string{"tcp"}}, {"http", []string{"tcp"}}, {"api", []string{"tcp"}},
		{"rtc", []string{"udp"}}, {"srt", []string{"udp"}},
	}
	want := map[string]*net.TCPAddr{} // flag -> address (IP nil: every interface)
	for _, l := range listeners {
		cell := defaults[l.flag]
		addr := loneNodeDefault(cell)
		h, p, err := net.SplitHostPort(addr)
		port, perr := strconv.Atoi(p)
		if err != nil || perr != nil {
			t.Fatalf("README: --%s's default for a lone node without --token is not host:port: %q", l.flag, cell)
		}
		a := &net.TCPAddr{Port: port}
		if h != "" {
			if a.IP = net.ParseIP(h); a.IP == nil {
				t.Fatalf("README: --%s's default %q has no IP", l.flag, addr)
			}
		}
		want[l.flag] = a
	}
	for _, flag := range []string{"gossip-addr", "raft-addr", "system-api"} {
		if !want[flag].IP.IsLoopback() {
			t.Errorf("README: a lone node's --%s defaults to %s, not loopback", flag, want[flag])
		}
	}
	// The test runs the real defaults, so those ports must be free.
	for _, l := range listeners {
		for _, proto := range l.protos {
			if err := portFree(proto, want[l.flag].Port); err != nil {
				harness.Missingf(t, "free default ports", "default port %d/%s (--%s) is taken on this machine, and this test runs `srs-mesh serve` "+
					"on its defaults: %v", want[l.flag].Port, proto, l.flag, err)
			}
		}
	}

	// The README's command, in a fresh directory, with nothing set.
	dir := t.TempDir()
	t.Chdir(dir)
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "SRS_MESH_") {
			env = append(env, e)
		}
	}
	proc := harness.StartEnv(t, env, binary, "serve")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("srs-mesh serve output:\n%s", proc.Output())
		}
	})
	system := want["system-api"].String()
	var st mesh.Status
	testkit.WaitFor(t, 20*time.Second, "the node elects itself", func() bool {
		if proc.Exited() {
			t.Fatalf("srs-mesh serve exited: %v", proc.Wait(time.Second))
		}
		st = mesh.Status{}
		return harness.GetJSON("http://"+system+"/mesh/v1/status", &st) == nil && st.Leader != ""
	})
	if st.NodeID != host || st.Leader != host || len(st.Members) != 1 || st.Voters != 1 {
		t.Errorf("node %q, leader %q, %d members, %d voters; want the hostname %q leading itself alone",
			st.NodeID, st.Leader, len(st.Members), st.Voters, host)
	}
	if entries, err := os.ReadDir(filepath.Join(dir, dataDir)); err != nil || len(entries) == 0 {
		t.Errorf("the node keeps no Raft data in %s (the README's default --data-dir): %v", dataDir, err)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		testkit.WaitFor(t, 10*time.Second, path+" answers 200", func() bool {
			resp, err := http.Get("http://" + system + path)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}

	// Each listener is where the README says, and nowhere else.
	socks, err := listeningSockets(proc.Cmd.Process.Pid)
	if err != nil {
		t.Fatalf("the node's sockets: %v", err)
	}
	for _, l := range listeners {
		w := want[l.flag]
		for _, proto := range l.protos {
			n := 0
			for _, s := range socks {
				if s.proto != proto || s.port != w.Port {
					continue
				}
				n++
				if (w.IP == nil && !s.ip.IsUnspecified()) || (w.IP != nil && !w.IP.Equal(s.ip)) {
					t.Errorf("--%s listens on %s %s, but the README's default is %s", l.flag, proto,
						net.JoinHostPort(s.ip.String(), strconv.Itoa(s.port)), w)
				}
			}
			if n == 0 {
				t.Errorf("--%s: the node does not listen on %s port %d, the README's default", l.flag, proto, w.Port)
			}
		}
	}

	// With no origin, a publish is refused in RTMP's own way.
	rtmp := net.JoinHostPort("127.0.0.1", strconv.Itoa(want["rtmp"].Port))
	info, err := publishStatus(rtmp, "live", "livestream")
	if err != nil {
		t.Fatalf("RTMP publish with no origin: %v", err)
	}
	level, code, desc := info.String("level"), info.String("code"), info.String("description")
	if level != "error" || code != "NetStream.Publish.Failed" || !strings.Contains(desc, "no origin") {
		t.Errorf("RTMP publish with no origin: onStatus %s %s %q, want error NetStream.Publish.Failed naming the missing origin",
			level, code, desc)
	}
	t.Logf("RTMP publish with no origin: onStatus %s %s %q", level, code, desc)
	st = mesh.Status{}
	if err := harness.GetJSON("http://"+system+"/mesh/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Assignments) != 0 || len(st.Origins) != 0 {
		t.Errorf("after the refused publish: %d origins, %d assignments; want none", len(st.Origins), len(st.Assignments))
	}
}

// readmeServeDefaults returns the default column of the README's table of
// `srs-mesh serve` flags, by flag name (without dashes).
func readmeServeDefaults(t *testing.T, readme string) map[string]string {
	t.Helper()
	row := regexp.MustCompile("(?m)^\\| `--([a-z0-9-]+)` \\| ([^|]*) \\|")
	defaults := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(readme, -1) {
		defaults[m[1]] = strings.TrimSpace(m[2])
	}
	if len(defaults) < 10 {
		t.Fatalf("the README's flag table has %d rows; update this test", len(defaults))
	}
	return defaults
}

// firstCode returns the first `code span` of a README table cell.
func firstCode(cell string) string {
	if m := regexp.MustCompile("`([^`]*)`").FindStringSubmatch(cell); m != nil {
		return m[1]
	}
	return ""
}

// loneNodeDefault reads a default cell of the flag table for a lone node
// (no --join, --bootstrap-expect 1) without --token: "`A` for a lone node,
// else `B`" is A, "`A` with `--token`, else `B`" is B, "`A`" is A.
func loneNodeDefault(cell string) string {
	if m := regexp.MustCompile("`([^`]*)` for a lone node").FindStringSubmatch(cell); m != nil {
		return m[1]
	}
	if m := regexp.MustCompile("with `--token`, else `([^`]*)`").FindStringSubmatch(cell); m != nil {
		return m[1]
	}
	return firstCode(cell)
}

// portFree reports whether port can be bound on every interface for proto
// (tcp or udp).
func portFree(proto string, port int) error {
	addr := ":" + strconv.Itoa(port)
	if proto == "udp" {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

// socket is a listening TCP socket or a bound UDP socket of a process.
type socket struct {
	proto string // tcp or udp
	ip    net.IP
	port  int
}

// listeningSockets lists the listening TCP and the bound UDP sockets that
// process pid holds, from Linux's /proc.
func listeningSockets(pid int) ([]socket, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	var out []socket
	for _, table := range []struct{ file, proto, state string }{
		{"tcp", "tcp", "0A"}, {"tcp6", "tcp", "0A"}, {"udp", "udp", "07"}, {"udp6", "udp", "07"},
	} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table.file))
		if errors.Is(err, os.ErrNotExist) && strings.HasSuffix(table.file, "6") {
			continue // no IPv6
		}
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != table.state || !inodes[f[9]] {
				continue
			}
			hexIP, hexPort, _ := strings.Cut(f[1], ":")
			port, err := strconv.ParseUint(hexPort, 16, 16)
			raw, herr := hex.DecodeString(hexIP)
			if err != nil || herr != nil || (len(raw) != 4 && len(raw) != 16) {
				return nil, fmt.Errorf("/proc/%d/net/%s: bad address %q", pid, table.file, f[1])
			}
			// The kernel prints each 32-bit word in host (little-endian) order.
			ip := make(net.IP, len(raw))
			for w := 0; w < len(raw); w += 4 {
				ip[w], ip[w+1], ip[w+2], ip[w+3] = raw[w+3], raw[w+2], raw[w+1], raw[w]
			}
			out = append(out, socket{proto: table.proto, ip: ip, port: int(port)})
		}
	}
	return out, nil
}

// publishStatus connects to the RTMP server at addr, publishes app/name
// and returns the info object of the first onStatus the server sends.
// After an error onStatus, the server must close the connection; the whole
// exchange must end within 20 s.
func publishStatus(addr, app, name string) (amf0.Object, error) {
	c, err := dialRTMPCommands(addr, 5*time.Second, 20*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.send(0, "connect", 1.0, amf0.Object{{Key: "app", Value: app}, {Key: "tcUrl", Value: "rtmp://" + addr + "/" + app}}); err != nil {
		return nil, err
	}
	if _, err := c.until("_result"); err != nil {
		return nil, err
	}
	if err := c.send(0, "createStream", 2.0, nil); err != nil {
		return nil, err
	}
	res, err := c.until("_result")
	if err != nil {
		return nil, err
	}
	sid, _ := res[len(res)-1].(float64)
	if err := c.send(uint32(sid), "publish", 3.0, nil, name, "live"); err != nil {
		return nil, err
	}
	vals, err := c.until("onStatus")
	if err != nil {
		return nil, err
	}
	info, ok := vals[len(vals)-1].(amf0.Object)
	if !ok {
		return nil, fmt.Errorf("onStatus without an info object: %v", vals)
	}
	if info.String("level") != "error" {
		return info, nil
	}
	// After an error the server ends the connection.
	for {
		if _, err := c.r.ReadMessage(); errors.Is(err, os.ErrDeadlineExceeded) {
			return info, fmt.Errorf("the connection stayed open after the error onStatus %v", info)
		} else if err != nil {
			return info, nil
		}
	}
}
