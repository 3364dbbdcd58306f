package harness

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
)

// ReportEnv names the environment variable that asks an end-to-end test
// binary for a report of what ran: the path of a file that TestMain writes
// when the tests end (see Tally). CI prints it, so that a run that skipped
// its end-to-end tests is seen, not taken for a pass.
const ReportEnv = "SRS_MESH_E2E_REPORT"

// Tally counts the outcomes of a test binary's top-level tests by reading
// its verbose output ("--- PASS: TestX", "--- SKIP: TestX", ...) on the way
// to the real standard output. It is the only way a TestMain can learn
// them: testing.M tells only the exit code.
type Tally struct {
	w      *os.File  // the write end that stands in for os.Stdout
	out    io.Writer // where the lines go on to: the real standard output
	stdout *os.File  // the real standard output, put back by Close
	done   chan struct{}
	mu     sync.Mutex
	counts map[string]int    // PASS, FAIL, SKIP
	skips  map[string]string // test -> the first line it logged before skipping
}

// TallyStdout replaces os.Stdout with a pipe whose lines are counted and
// copied to the real standard output. Call it before testing.M.Run, with
// the test.v flag set, and Close it after.
func TallyStdout() (*Tally, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	t := newTally(os.Stdout)
	t.w, t.stdout = w, os.Stdout
	os.Stdout = w
	go t.read(r)
	return t, nil
}

func newTally(out io.Writer) *Tally {
	return &Tally{out: out, done: make(chan struct{}), counts: map[string]int{}, skips: map[string]string{}}
}

// read owns the pipe's read end until the write end is closed. In verbose
// mode a test's log lines come after its "=== RUN" (or "=== NAME", "===
// CONT") line and before its "--- SKIP" line, so the last one logged is the
// reason it skipped.
func (t *Tally) read(r io.ReadCloser) {
	defer close(t.done)
	defer r.Close()
	t.count(r)
}

// count reads verbose test output from r, copying it to t.out.
func (t *Tally) count(r io.Reader) {
	sc := bufio.NewScanner(io.TeeReader(r, t.out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	current := ""
	last := map[string]string{}
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "=== ") {
			f := strings.Fields(line)
			if len(f) >= 3 {
				current, _, _ = strings.Cut(f[2], "/")
			}
			continue
		}
		if strings.HasPrefix(line, "    ") && current != "" && !strings.Contains(line, "--- ") {
			if l := strings.TrimSpace(line); l != "" {
				last[current] = l
			}
			continue
		}
		for _, res := range []string{"PASS", "FAIL", "SKIP"} {
			prefix := "--- " + res + ": "
			if !strings.HasPrefix(line, prefix) {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimPrefix(line, prefix), " ")
			t.mu.Lock()
			t.counts[res]++
			if res == "SKIP" {
				t.skips[name] = last[name]
			}
			t.mu.Unlock()
			delete(last, name)
		}
	}
	// Whatever could not be read as lines still reaches the real output.
	io.Copy(t.out, r)
}

// Close puts the real standard output back and waits until every line
// written so far was counted.
func (t *Tally) Close() {
	os.Stdout = t.stdout
	t.w.Close()
	<-t.done
}

// Report is a short account of the run: how many top-level tests ran,
// passed, failed and were skipped, and why each skipped one skipped.
func (t *Tally) Report(what string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	ran := t.counts["PASS"] + t.counts["FAIL"]
	fmt.Fprintf(&b, "%s: %d ran (%d passed, %d failed), %d skipped\n", what, ran, t.counts["PASS"], t.counts["FAIL"], t.counts["SKIP"])
	names := make([]string, 0, len(t.skips))
	for n := range t.skips {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "  skipped %s: %s\n", n, t.skips[n])
	}
	return b.String()
}
