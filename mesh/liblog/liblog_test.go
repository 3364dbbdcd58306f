package liblog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestWriterKeepsWarningsAndErrors(t *testing.T) {
	var buf bytes.Buffer
	w := &Writer{Log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	in := "2026/12/04 [DEBUG] raft: chatter\n[INFO] memberlist: more chatter\n\n" +
		"[WARN] raft: heartbeat failed\n2026-12-04T08:00:00Z [ERROR] raft: no quorum\nuntagged line\n"
	if n, err := w.Write([]byte(in)); n != len(in) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	out := buf.String()
	for _, want := range []string{`level=WARN msg="raft: heartbeat failed"`, `level=ERROR msg="raft: no quorum"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	for _, not := range []string{"chatter", "untagged"} {
		if strings.Contains(out, not) {
			t.Errorf("log has %q:\n%s", not, out)
		}
	}
}

func TestParseLogLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{
		"[TRACE] x": slog.LevelDebug, "[debug] x": slog.LevelDebug, "[INFO] x": slog.LevelInfo,
		"[WARNING] x": slog.LevelWarn, "[ERR] x": slog.LevelError, "[OTHER] x": slog.LevelInfo, "] x [": slog.LevelInfo,
	} {
		if got, _ := parseLogLevel(in); got != want {
			t.Errorf("parseLogLevel(%q) = %v, want %v", in, got, want)
		}
	}
}

// TestStartWarningsAreDropped feeds the warnings raft gives while a new
// cluster forms (as hclog writes them) and the same warnings from a cluster
// with a history: only the latter reach the log.
func TestStartWarningsAreDropped(t *testing.T) {
	start := []string{
		`2026-12-04T10:32:25.290Z [WARN]  raft: heartbeat timeout reached, starting election: last-leader-addr= last-leader-id=`,
		`2026-12-04T10:32:25.290Z [WARN]  raft: heartbeat timeout reached, starting election: last-leader-addr=`,
		`2026-12-04T10:36:44.523Z [WARN]  raft: no known peers, aborting election`,
		`2026-12-04T10:36:44.622Z [WARN]  raft: failed to get previous log: previous-index=1 last-index=0 error="log not found"`,
		`2026-12-04T10:36:44.619Z [WARN]  raft: appendEntries rejected, sending older logs: peer="{Voter n2 127.0.0.1:24314}" next=1`,
		`2026-12-04T10:54:37.910Z [WARN]  raft: rejecting vote request since our last term is greater: candidate=127.0.0.1:32424 last-term=2 last-candidate-term=1`,
		`[WARN]  raft: rejecting pre-vote request since we have a leader: from=127.0.0.1:7947 leader=127.0.0.1:7948 leader-id=n2`,
		`[WARN]  raft: Election timeout reached, restarting election`,
	}
	real := []string{
		`[WARN]  raft: heartbeat timeout reached, starting election: last-leader-addr=127.0.0.1:7947 last-leader-id=n1`,
		`[WARN]  raft: failed to get previous log: previous-index=90 last-index=12 error="log not found"`,
		`[WARN]  raft: appendEntries rejected, sending older logs: peer="{Voter n2 127.0.0.1:24314}" next=13`,
	}
	for _, line := range start {
		if _, msg := parseLogLevel(line); !expected(msg) {
			t.Errorf("a normal start's warning is kept: %s", line)
		}
	}
	for _, line := range real {
		if _, msg := parseLogLevel(line); expected(msg) {
			t.Errorf("a real warning is dropped: %s", line)
		}
	}
	var buf bytes.Buffer
	w := &Writer{Log: slog.New(slog.NewTextHandler(&buf, nil))}
	w.Write([]byte(strings.Join(append(start, real...), "\n")))
	if got := strings.Count(buf.String(), "level=WARN"); got != len(real) {
		t.Errorf("%d warnings logged, want %d:\n%s", got, len(real), buf.String())
	}
}
