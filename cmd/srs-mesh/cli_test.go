package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/srs-mesh/srs-mesh/mesh"
)

// runRoot runs the srs-mesh command line with args and returns its output
// and error.
func runRoot(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestVersionCommandAndFlag(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := runRoot(t, args...)
		if err != nil || !strings.HasPrefix(out, "srs-mesh ") || !strings.Contains(out, "go1.") || strings.Count(out, "\n") != 1 {
			t.Errorf("srs-mesh %v: %v %q", args, err, out)
		}
	}
}

func TestBuildInfoFrom(t *testing.T) {
	stamped := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.modified", Value: "true"}}}, true
	}
	checkout := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, true
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	for _, c := range []struct {
		name, version, commit string
		read                  func() (*debug.BuildInfo, bool)
		want                  string
	}{
		{"go install @v1.4.0 from a modified checkout", "dev", "", stamped, "v1.4.0 (revision 0123abcd, modified, go1.26.8)"},
		{"the linker wins", "v2.0.0", "fedc", stamped, "v2.0.0 (revision fedc, modified, go1.26.8)"},
		{"a checkout without VCS stamps", "dev", "", checkout, "dev (go1.26.8)"},
		{"no build information", "", "", none, "dev ("},
	} {
		got := buildInfoFrom(c.version, c.commit, c.read).String()
		if !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestBuildInfoMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := buildInfo{Version: "v1.4.0", Revision: "0123abcd", GoVersion: "go1.26.8"}
	reg.MustRegister(b.collector())
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != "srs_mesh_build_info" {
		t.Fatalf("%v %v", err, mfs)
	}
	m := mfs[0].GetMetric()[0]
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if m.GetGauge().GetValue() != 1 || labels["version"] != "v1.4.0" || labels["revision"] != "0123abcd" || labels["goversion"] != "go1.26.8" {
		t.Errorf("srs_mesh_build_info: %v", m)
	}
}

// TestServeHelpShowsTypesAndOneDefault checks "serve --help": every flag's
// value is named by its type (pflag reads a backquoted word in a usage as
// the value's name), and no flag states its default twice.
func TestServeHelpShowsTypesAndOneDefault(t *testing.T) {
	root := newRootCmd()
	serve, _, err := root.Find([]string{"serve"})
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]bool{"": true, "string": true, "int": true, "duration": true, "strings": true, "origins": true, "size": true, "float": true}
	serve.Flags().VisitAll(func(f *pflag.Flag) {
		if name, _ := pflag.UnquoteUsage(f); !types[name] {
			t.Errorf("--%s shows its value as %q", f.Name, name)
		}
	})
	for line := range strings.SplitSeq(serve.Flags().FlagUsagesWrapped(0), "\n") {
		if strings.Count(line, "(default") > 1 {
			t.Errorf("two defaults: %s", line)
		}
	}
	if out, err := runRoot(t, "serve", "--help"); err != nil || !strings.Contains(out, "--node-id string") {
		t.Errorf("serve --help: %v\n%s", err, out)
	}
}

func TestMisspellingsGetSuggestions(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--nod-id", "x"}, "Did you mean --node-id?"},
		{[]string{"status", "--jsno"}, "Did you mean --json?"},
		{[]string{"serve", "--bootstrap-expected=3"}, "Did you mean --bootstrap-expect?"},
		{[]string{"serve", "--zzzzzzzzzz"}, "Run 'srs-mesh serve --help' for usage."},
		{[]string{"stauts"}, "Did you mean this?\n\tstatus"},
		{[]string{"drian", "o1"}, "Did you mean this?\n\tdrain"},
		{[]string{"drain"}, "drain needs one argument, the id of the origin"},
		{[]string{"undrain", "a", "b"}, "undrain needs one argument"},
	} {
		out, err := runRoot(t, c.args...)
		if err == nil {
			t.Errorf("%v: no error", c.args)
			continue
		}
		if !strings.Contains(err.Error()+"\n"+out, c.want) {
			t.Errorf("%v: %v\n%s\nwant %q", c.args, err, out, c.want)
		}
	}
	if _, err := runRoot(t, "serve", "--zzzzzzzzzz"); err != nil && strings.Contains(err.Error(), "Did you mean") {
		t.Errorf("a far-off flag got a suggestion: %v", err)
	}
}

func TestLogValuesStayOnOneLine(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: oneLineAttr}))
	joined := errors.New("2 errors occurred:\n\t* Failed to join 127.0.0.1:7942: connection refused\n\t* Failed to join 127.0.0.1:7943: connection refused\n\n")
	log.Info("join", "err", joined, "note", "a\nb", "n", 3, "plain", errors.New("plain"))
	out := buf.String()
	if strings.Count(out, "\n") != 1 || strings.Contains(out, `\n`) || strings.Contains(out, `\t`) {
		t.Errorf("log line: %s", out)
	}
	for _, want := range []string{
		`err="2 errors occurred: Failed to join 127.0.0.1:7942: connection refused; Failed to join 127.0.0.1:7943: connection refused"`,
		`note="a; b"`, "n=3", "plain=plain",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log line lacks %s: %s", want, out)
		}
	}
}

func TestStatusFitsTheTerminal(t *testing.T) {
	now := time.Now()
	st := mesh.Status{Origins: []mesh.OriginStatus{
		{ID: "origin-with-a-rather-long-name-1", RTMP: "10.0.0.5:1935", HTTP: "10.0.0.5:8080", Healthy: true, Static: true},
		{ID: "origin-2", RTMP: "10.0.0.6:1935", Static: true, HealthReason: "probe 10.0.0.6:1935 failed: connection refused"},
	}}
	var wide, narrow bytes.Buffer
	printOrigins(&wide, 160, st, now)
	printOrigins(&narrow, 80, st, now)
	if strings.Contains(wide.String(), "~") || !strings.Contains(wide.String(), "origin-with-a-rather-long-name-1 ") {
		t.Errorf("a wide terminal gets cut values:\n%s", wide.String())
	}
	if !strings.Contains(narrow.String(), "~") {
		t.Errorf("an 80-column terminal gets whole values:\n%s", narrow.String())
	}
	for _, out := range []string{wide.String(), narrow.String()} {
		if !strings.Contains(out, "origin-2 is down: probe 10.0.0.6:1935 failed: connection refused") {
			t.Errorf("no reason for the down origin:\n%s", out)
		}
	}
	for line := range strings.SplitSeq(narrow.String(), "\n") {
		if len(line) > 80 {
			t.Errorf("line of %d columns at 80: %q", len(line), line)
		}
	}
	t.Setenv("COLUMNS", "132")
	if w := terminalWidth(&bytes.Buffer{}); w != 132 {
		t.Errorf("terminalWidth with COLUMNS=132: %d", w)
	}
	t.Setenv("COLUMNS", "40")
	if w := terminalWidth(&bytes.Buffer{}); w != 80 {
		t.Errorf("terminalWidth with COLUMNS=40: %d", w)
	}
}

func TestNodeURLs(t *testing.T) {
	listen := func(a string) net.Listener {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	lns := listeners{system: listen("127.0.0.1:0"), rtmp: listen(":0"), http: listen("127.0.0.1:0")}
	got := fmt.Sprint(nodeURLs(lns, netip.MustParseAddr("192.0.2.7")))
	_, rtmpPort, _ := net.SplitHostPort(lns.rtmp.Addr().String())
	for _, want := range []string{"dashboard http://" + lns.system.Addr().String() + "/",
		"rtmp rtmp://192.0.2.7:" + rtmpPort + "/live/livestream", "hls http://" + lns.http.Addr().String() + "/live/livestream.m3u8"} {
		if !strings.Contains(got, want) {
			t.Errorf("nodeURLs lacks %q: %s", want, got)
		}
	}
	if strings.Contains(got, "whip") || strings.Contains(got, "srt") {
		t.Errorf("URLs of closed listeners: %s", got)
	}
}
