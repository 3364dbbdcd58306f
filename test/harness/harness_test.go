package harness

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestNginxOrigin checks the harness itself: a generated stream published to
// an nginx-rtmp origin can be played back from it.
func TestNginxOrigin(t *testing.T) {
	n := StartNginx(t, NginxOptions{HLS: true, DASH: true})
	PublishRTMP(t, "rtmp://"+n.RTMPAddr+"/live/h")
	res := PlayUntil(t, "rtmp://"+n.RTMPAddr+"/live/h", 2*time.Second, 10, 20*time.Second)
	t.Logf("decoded %d frames", res.VideoFrames)
	res = PlayUntil(t, "http://"+n.HTTPAddr+"/live/h.m3u8", 2*time.Second, 10, 30*time.Second)
	t.Logf("hls decoded %d frames", res.VideoFrames)
}

// TestTallyCounts reads the verbose output of a run with a pass, a failure,
// a skip with its reason, parallel tests and subtests, and counts only the
// top-level tests.
func TestTallyCounts(t *testing.T) {
	out := `=== RUN   TestA
--- PASS: TestA (0.01s)
=== RUN   TestB
=== PAUSE TestB
=== RUN   TestC
    c_test.go:12: srs: set SRS_MESH_TEST_SRS to an SRS binary
--- SKIP: TestC (0.00s)
=== CONT  TestB
=== RUN   TestB/sub
    b_test.go:3: some log
    --- SKIP: TestB/sub (0.00s)
    b_test.go:9: boom
--- FAIL: TestB (1.20s)
FAIL
`
	var copied strings.Builder
	tl := newTally(&copied)
	tl.count(strings.NewReader(out))
	if copied.String() != out {
		t.Fatalf("output not passed through:\n%s", copied.String())
	}
	got := tl.Report("e2e")
	want := "e2e: 2 ran (1 passed, 1 failed), 1 skipped\n  skipped TestC: c_test.go:12: srs: set SRS_MESH_TEST_SRS to an SRS binary\n"
	if got != want {
		t.Fatalf("report:\n%q\nwant\n%q", got, want)
	}
}

// recordingTB records how Missing ended a test.
type recordingTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordingTB) Helper()                           {}
func (r *recordingTB) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }
func (r *recordingTB) Skipf(format string, args ...any)  { r.skip = fmt.Sprintf(format, args...) }

// TestMissingStrict: in CI a missing tool fails the test, naming the tool;
// elsewhere it skips, saying why; SRS_MESH_E2E_STRICT overrides CI.
func TestMissingStrict(t *testing.T) {
	for _, tc := range []struct {
		ci, strict string
		fails      bool
	}{
		{"", "", false},
		{"true", "", true},
		{"true", "0", false},
		{"", "1", true},
	} {
		t.Setenv("CI", tc.ci)
		if tc.strict == "" {
			os.Unsetenv(StrictEnv)
		} else {
			t.Setenv(StrictEnv, tc.strict)
		}
		r := &recordingTB{}
		Missing(r, "nginx", "not installed")
		if tc.fails != (r.fatal != "") || tc.fails == (r.skip != "") {
			t.Errorf("CI=%q %s=%q: fatal %q, skip %q", tc.ci, StrictEnv, tc.strict, r.fatal, r.skip)
		}
		if r.fatal+r.skip == "" || !strings.Contains(r.fatal+r.skip, "nginx") {
			t.Errorf("CI=%q: the message does not name the tool: %q", tc.ci, r.fatal+r.skip)
		}
	}
}
