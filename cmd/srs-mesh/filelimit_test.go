package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestMaxRTMPConnsFlag(t *testing.T) {
	cmd := newServeCmd()
	if err := cmd.Flags().Parse(nil); err != nil {
		t.Fatal(err)
	}
	if got := cmd.Flags().Lookup("max-rtmp-conns").Value.String(); got != "10000" {
		t.Errorf("--max-rtmp-conns defaults to %s", got)
	}
	env := map[string]string{"SRS_MESH_MAX_RTMP_CONNS": "20000"}
	if err := applyEnv(cmd.Flags(), func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if got := cmd.Flags().Lookup("max-rtmp-conns").Value.String(); got != "20000" {
		t.Errorf("--max-rtmp-conns = %s from the environment", got)
	}
}

// The node logs its file descriptor limit, and warns when one of its
// connection caps needs more than it.
func TestLogFileLimit(t *testing.T) {
	soft, _, err := fileLimit()
	if err != nil {
		t.Skipf("no file limit here: %v", err)
	}
	for _, tc := range []struct {
		o    serveOptions
		warn bool
	}{
		{serveOptions{maxRTMPConns: 1, maxHTTPConns: 1}, soft < 1026},
		{serveOptions{maxRTMPConns: int(soft), maxHTTPConns: 1}, true},
		{serveOptions{maxRTMPConns: 1, maxHTTPConns: int(soft)}, true},
		{serveOptions{maxRTMPConns: 1, maxHTTPConns: 0}, true}, // no HTTP cap: the limit is the only one
	} {
		var buf bytes.Buffer
		logFileLimit(slog.New(slog.NewTextHandler(&buf, nil)), tc.o)
		out := buf.String()
		if !strings.Contains(out, "file descriptors") {
			t.Errorf("%+v: no limit logged:\n%s", tc.o, out)
		}
		if got := strings.Contains(out, "level=WARN"); got != tc.warn {
			t.Errorf("%+v: warned %v, want %v:\n%s", tc.o, got, tc.warn, out)
		}
	}
}
