// Package liblog carries the log lines of the libraries the mesh runs
// (hashicorp/raft's hclog, memberlist's log.Logger) into the node's slog
// logger. It holds no state and starts no goroutine.
package liblog

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
)

// Writer adapts the line-oriented loggers of hashicorp/raft (hclog) and
// memberlist (log.Logger) to slog. Each line's "[LEVEL]" tag becomes the slog
// level; lines below warn are dropped to keep the libraries' chatter out of
// the node's logs, and so are the warnings every normal start gives
// (expected).
type Writer struct {
	Log *slog.Logger
}

var _ io.Writer = (*Writer)(nil)

// Write logs each line of p at its tag's level, or drops it; it never fails.
func (w *Writer) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(p, []byte{'\n'}) {
		s := strings.TrimSpace(string(line))
		if s == "" {
			continue
		}
		level, msg := parseLogLevel(s)
		if level == slog.LevelWarn && expected(msg) {
			level = slog.LevelInfo
		}
		if level < slog.LevelWarn {
			continue
		}
		w.Log.Log(context.Background(), level, msg)
	}
	return len(p), nil
}

// startWarnings are raft's warnings that every new cluster gives while it
// forms: the line holds msg and, when set, field followed by a space or
// the end of the line (the values that mark a cluster with no history yet).
var startWarnings = []struct{ msg, field string }{
	// The first election, before this node knew any leader.
	{"heartbeat timeout reached, starting election", "last-leader-addr="},
	// A node that waits to bootstrap, or to be added, has no peers yet.
	{"no known peers, aborting election", ""},
	// A new follower's empty log meets the leader's first entry.
	{"failed to get previous log", "last-index=0"},
	{"appendEntries rejected, sending older logs", " next=1"},
	// Nodes of a forming cluster time out together: a split vote, and a
	// candidate behind the others, or late, asks for votes. Refusing it is
	// Raft working; the candidate logs its own election, which stays a
	// warning once it has known a leader.
	{"Election timeout reached, restarting election", ""},
	{"vote request since our last term is greater", ""},
	{"vote request since our last index is greater", ""},
	{"vote request since we have a leader", ""},
}

// expected reports whether a line the library logs as a warning is part of
// a normal start (startWarnings). The same lines once the cluster has a
// history (a known leader, a log) are real warnings and stay ones.
func expected(msg string) bool {
	for _, w := range startWarnings {
		if strings.Contains(msg, w.msg) && (w.field == "" || strings.Contains(msg+" ", w.field+" ")) {
			return true
		}
	}
	return false
}

// parseLogLevel finds the first "[LEVEL]" tag of a line and returns the level
// and the rest of the line.
func parseLogLevel(s string) (slog.Level, string) {
	i := strings.IndexByte(s, '[')
	j := strings.IndexByte(s, ']')
	if i < 0 || j < i {
		return slog.LevelInfo, s
	}
	msg := strings.TrimSpace(s[j+1:])
	switch strings.ToUpper(s[i+1 : j]) {
	case "TRACE", "DEBUG":
		return slog.LevelDebug, msg
	case "INFO":
		return slog.LevelInfo, msg
	case "WARN", "WARNING":
		return slog.LevelWarn, msg
	case "ERR", "ERROR":
		return slog.LevelError, msg
	}
	return slog.LevelInfo, s
}
