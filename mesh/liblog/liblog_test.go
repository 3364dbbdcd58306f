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
