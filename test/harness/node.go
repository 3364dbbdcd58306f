package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// BuildSRSMesh compiles ./cmd/srs-mesh of the module that contains the
// working directory into dir and returns the binary's path.
func BuildSRSMesh(dir string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(dir, "srs-mesh")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/srs-mesh")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v: %s", err, b)
	}
	return bin, nil
}

// Node is one srs-mesh process started by a test, with its addresses.
type Node struct {
	ID         string
	DataDir    string
	GossipAddr string
	RaftAddr   string
	SystemAPI  string
	RTMPAddr   string
	HTTPAddr   string
	// APIAddr (SRS API and WebRTC signalling, tcp), RTCAddr (WebRTC media,
	// udp) and SRTAddr (udp) are empty unless NodeSpec.Protocols is set.
	APIAddr string
	RTCAddr string
	SRTAddr string
	Bin     string
	Args    []string
	proc    *Proc
	t       testing.TB
}

// NodeSpec names the node and the arguments beyond its addresses.
type NodeSpec struct {
	ID      string
	DataDir string // default: a new temporary directory
	Extra   []string
	// Protocols also enables the SRS API, WebRTC and SRT listeners on free
	// loopback ports, announcing 127.0.0.1 in WebRTC candidates. By default
	// a node serves only RTMP and HTTP streams.
	Protocols bool
}

// NewNode allocates addresses for a node without starting it, so that a
// set of nodes can name each other in --join before any starts.
func NewNode(t testing.TB, bin string, spec NodeSpec) *Node {
	t.Helper()
	n := &Node{
		ID:         spec.ID,
		DataDir:    spec.DataDir,
		GossipAddr: fmt.Sprintf("127.0.0.1:%d", UniquePort(t, true)),
		RaftAddr:   fmt.Sprintf("127.0.0.1:%d", UniquePort(t, false)),
		SystemAPI:  fmt.Sprintf("127.0.0.1:%d", UniquePort(t, false)),
		RTMPAddr:   fmt.Sprintf("127.0.0.1:%d", UniquePort(t, false)),
		HTTPAddr:   fmt.Sprintf("127.0.0.1:%d", UniquePort(t, false)),
		Bin:        bin,
		t:          t,
	}
	if n.DataDir == "" {
		n.DataDir = t.TempDir()
	}
	listeners := []string{"--api", "", "--rtc", "", "--srt", ""}
	if spec.Protocols {
		n.APIAddr = fmt.Sprintf("127.0.0.1:%d", UniquePort(t, false))
		n.RTCAddr = fmt.Sprintf("127.0.0.1:%d", UniqueUDPPort(t))
		n.SRTAddr = fmt.Sprintf("127.0.0.1:%d", UniqueUDPPort(t))
		listeners = []string{"--api", n.APIAddr, "--rtc", n.RTCAddr, "--srt", n.SRTAddr,
			"--rtc-candidate", "127.0.0.1"}
	}
	n.Args = append([]string{"serve",
		"--node-id", n.ID,
		"--data-dir", n.DataDir,
		"--gossip-addr", n.GossipAddr,
		"--raft-addr", n.RaftAddr,
		"--advertise-addr", "127.0.0.1",
		"--system-api", n.SystemAPI,
		"--rtmp", n.RTMPAddr,
		"--http", n.HTTPAddr,
	}, listeners...)
	n.Args = append(append(n.Args, "--log-level", "debug"), spec.Extra...)
	return n
}

// handedOut holds the ports UniquePort and UniqueUDPPort returned.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// unique calls free until it returns a port not handed out before.
func unique(t testing.TB, free func() int) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for i := 0; i < 100; i++ {
		if p := free(); !handedOut.ports[p] {
			handedOut.ports[p] = true
			return p
		}
	}
	t.Fatal("no free port that was not handed out before")
	return 0
}

// UniquePort is FreePort for ports that are bound later, as a node's are:
// the kernel may offer a port again until someone binds it, so a set of
// nodes allocated before any starts could otherwise share one. It never
// returns a port it returned before in this process.
func UniquePort(t testing.TB, udp bool) int {
	t.Helper()
	return unique(t, func() int { return testkit.FreePort(t, udp) })
}

// UniqueUDPPort is FreeUDPPort with the guarantee of UniquePort.
func UniqueUDPPort(t testing.TB) int {
	t.Helper()
	return unique(t, func() int { return testkit.FreeUDPPort(t) })
}

// Start runs the node in the background; it is killed when the test ends.
func (n *Node) Start(extra ...string) {
	n.t.Helper()
	n.proc = Start(n.t, n.Bin, append(append([]string(nil), n.Args...), extra...)...)
}

// Proc returns the running process (nil before Start).
func (n *Node) Proc() *Proc { return n.proc }

// Kill stops the node at once, as a crash would.
func (n *Node) Kill() {
	if n.proc != nil {
		n.proc.Kill()
	}
}

// Stop sends SIGTERM and waits up to d for a graceful exit.
func (n *Node) Stop(d time.Duration) error {
	if n.proc == nil || n.proc.Exited() {
		return nil
	}
	n.proc.Cmd.Process.Signal(syscall.SIGTERM)
	return n.proc.Wait(d)
}

// Logs returns what the node printed.
func (n *Node) Logs() string {
	if n.proc == nil {
		return ""
	}
	return n.proc.Output()
}

// RTMPURL is the rtmp:// URL of app/stream on this node.
func (n *Node) RTMPURL(path string) string {
	return "rtmp://" + n.RTMPAddr + "/" + strings.TrimPrefix(path, "/")
}

// HTTPURL is the http:// URL of path on this node's HTTP streaming port.
func (n *Node) HTTPURL(path string) string {
	return "http://" + n.HTTPAddr + "/" + strings.TrimPrefix(path, "/")
}

// Status fetches GET /mesh/v1/status into v.
func (n *Node) Status(v any) error {
	return GetJSON("http://"+n.SystemAPI+"/mesh/v1/status", v)
}

// GetJSON fetches url and decodes its JSON body into v; a non-2xx status is
// an error.
func GetJSON(url string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// DumpOnFailure prints the logs of nodes at the end of a failed test.
func DumpOnFailure(t testing.TB, nodes ...*Node) {
	t.Cleanup(func() {
		if !t.Failed() || os.Getenv("SRS_MESH_TEST_QUIET") != "" {
			return
		}
		for _, n := range nodes {
			t.Logf("---- logs of %s ----\n%s", n.ID, tail(n.Logs(), 6000))
		}
	})
}
