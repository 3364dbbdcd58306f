package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// docBlock returns the fenced code block that follows the marker
// "<!-- bare-metal:NAME -->" in docs/bare-metal.md.
func docBlock(t *testing.T, doc, name string) string {
	t.Helper()
	return fencedAfter(t, doc, "<!-- bare-metal:"+name+" -->")
}

// fencedAfter returns the fenced code block that follows marker in doc.
func fencedAfter(t *testing.T, doc, marker string) string {
	t.Helper()
	i := strings.Index(doc, marker)
	if i < 0 {
		t.Fatalf("no %s block", marker)
	}
	rest := doc[i+len(marker):]
	start := strings.Index(rest, "```")
	if start < 0 {
		t.Fatalf("no code block after %s", marker)
	}
	rest = rest[start+3:]
	rest = rest[strings.IndexByte(rest, '\n')+1:]
	end := strings.Index(rest, "```")
	if end < 0 {
		t.Fatalf("unterminated code block after %s", marker)
	}
	return rest[:end]
}

// loopback maps the document's example addresses (10.0.0.x) to loopback
// addresses (127.0.0.x), which is the only change the test makes.
func loopback(s string) string { return strings.ReplaceAll(s, "10.0.0.", "127.0.0.") }

// joinLines joins backslash-continued lines.
func joinLines(s string) string { return strings.ReplaceAll(s, "\\\n", " ") }

var envRef = regexp.MustCompile(`\$\{([A-Z_]+)\}`)

// expand substitutes ${VAR} the way systemd does in ExecStart.
func expand(s string, env map[string]string) string {
	return envRef.ReplaceAllStringFunc(s, func(m string) string { return env[m[2:len(m)-1]] })
}

// TestBareMetalDoc follows docs/bare-metal.md: three hosts configured with
// the environment file and started with the systemd unit's ExecStart, the
// status command, adding a fourth host by hand, and removing it with the
// unit's stop signal.
func TestBareMetalDoc(t *testing.T) {
	raw, err := os.ReadFile("../docs/bare-metal.md")
	if err != nil {
		t.Fatal(err)
	}
	// The document's certificate directory becomes a temporary one.
	tlsDir := t.TempDir()
	doc := strings.ReplaceAll(string(raw), "/etc/srs-mesh/tls", tlsDir)

	// The certificates, made as documented.
	for _, line := range strings.Split(strings.TrimSpace(docBlock(t, doc, "certs")), "\n") {
		runDocCLI(t, loopback(line))
	}

	// The environment file, one per host.
	baseEnv := map[string]string{}
	for _, line := range strings.Split(docBlock(t, doc, "env"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("env file line %q is not KEY=VALUE", line)
		}
		baseEnv[k] = loopback(v)
	}
	if baseEnv["NODE_ID"] == "" || baseEnv["NODE_IP"] == "" {
		t.Fatalf("env file must set NODE_ID and NODE_IP: %v", baseEnv)
	}

	// The unit's ExecStart and stop signal.
	unit := joinLines(docBlock(t, doc, "unit"))
	var execStart, killSignal string
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = v
		}
		if v, ok := strings.CutPrefix(line, "KillSignal="); ok {
			killSignal = v
		}
	}
	if execStart == "" || killSignal != "SIGTERM" {
		t.Fatalf("unit has ExecStart %q and KillSignal %q", execStart, killSignal)
	}

	hosts := []*harness.Proc{}
	for i := 1; i <= 3; i++ {
		env := map[string]string{}
		for k, v := range baseEnv {
			env[k] = v
		}
		env["NODE_ID"] = fmt.Sprintf("mesh-%d", i)
		env["NODE_IP"] = fmt.Sprintf("127.0.0.%d", 10+i)
		env["SRS_MESH_DATA_DIR"] = t.TempDir()
		hosts = append(hosts, startDocCommand(t, expand(execStart, env), env))
	}
	statusJSON := func(ip string, st *mesh.Status) error {
		return harness.GetJSON("http://"+ip+":12025/mesh/v1/status", st)
	}
	testkit.WaitFor(t, 30*time.Second, "three hosts form a cluster", func() bool {
		var st mesh.Status
		return statusJSON("127.0.0.11", &st) == nil && st.Leader != "" && len(st.Members) == 3
	})
	t.Cleanup(func() {
		if t.Failed() {
			for i, h := range hosts {
				t.Logf("---- mesh-%d ----\n%s", i+1, lastLines(h.Output(), 40))
			}
		}
	})

	// The status command, as documented.
	status := strings.Fields(loopback(strings.TrimSpace(docBlock(t, doc, "status"))))
	out, err := exec.Command(binary, status[1:]...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "MEMBERS (3)") {
		t.Fatalf("%v: %v\n%s", status, err, out)
	}

	// Add a fourth host by hand: its certificate, then the node.
	addLines := strings.Split(loopback(joinLines(strings.TrimSpace(docBlock(t, doc, "add")))), "\n")
	if len(addLines) != 2 {
		t.Fatalf("add block has %d commands, want the certificate and the node", len(addLines))
	}
	runDocCLI(t, addLines[0])
	add := strings.Fields(addLines[1])
	env := map[string]string{}
	for len(add) > 0 && strings.Contains(add[0], "=") && !strings.HasPrefix(add[0], "-") {
		k, v, _ := strings.Cut(add[0], "=")
		if k == "SRS_MESH_DATA_DIR" {
			v = t.TempDir()
		}
		env[k] = v
		add = add[1:]
	}
	if len(add) < 2 || add[0] != "srs-mesh" {
		t.Fatalf("add block does not run srs-mesh: %v", add)
	}
	fourth := startDocCommand(t, binary+" "+strings.Join(add[1:], " "), env)
	testkit.WaitFor(t, 30*time.Second, "fourth host becomes a voter", func() bool {
		var st mesh.Status
		if statusJSON("127.0.0.11", &st) != nil || len(st.Members) != 4 {
			return false
		}
		for _, m := range st.Members {
			if !m.Voter {
				return false
			}
		}
		return true
	})

	// Remove it: the unit stops with SIGTERM, a graceful leave.
	if strings.TrimSpace(docBlock(t, doc, "remove")) != "systemctl stop srs-mesh" {
		t.Fatal("remove block changed; update this test")
	}
	if err := stopProc(fourth, 45*time.Second); err != nil {
		t.Fatalf("mesh-4 did not stop cleanly: %v\n%s", err, lastLines(fourth.Output(), 30))
	}
	testkit.WaitFor(t, 30*time.Second, "mesh-4 removed from the voter set", func() bool {
		var st mesh.Status
		if statusJSON("127.0.0.12", &st) != nil || st.Leader == "" {
			return false
		}
		for _, m := range st.Members {
			if m.ID == "mesh-4" && (m.Voter || m.GossipState == "alive") {
				return false
			}
		}
		return true
	})
}

// runDocCLI runs a documented "srs-mesh ..." command line with the binary
// under test.
func runDocCLI(t *testing.T, line string) {
	t.Helper()
	words := strings.Fields(line)
	if len(words) < 2 || words[0] != "srs-mesh" {
		t.Fatalf("documented command %q does not run srs-mesh", line)
	}
	if out, err := exec.Command(binary, words[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
}

// startDocCommand runs a documented command line with extra environment
// variables, the way systemd runs ExecStart.
func startDocCommand(t *testing.T, line string, env map[string]string) *harness.Proc {
	t.Helper()
	words := strings.Fields(line)
	if words[0] == "/usr/local/bin/srs-mesh" {
		words[0] = binary
	}
	p := harness.StartEnv(t, envList(env), words[0], words[1:]...)
	return p
}

func envList(env map[string]string) []string {
	out := os.Environ()
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

func stopProc(p *harness.Proc, d time.Duration) error {
	p.Cmd.Process.Signal(syscall.SIGTERM)
	return p.Wait(d)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
