package harness

import (
	"fmt"
	"os"
	"strconv"
	"testing"
)

// StrictEnv names the environment variable that turns a missing tool from a
// skip into a failure. When it is unset, CI=true turns strict mode on, so
// that a CI run whose machine lost FFmpeg, nginx-rtmp, Chromium or SRS fails
// instead of passing without running its end-to-end tests. Set it to 0 to
// skip anyway (a CI of your own without SRS, say).
const StrictEnv = "SRS_MESH_E2E_STRICT"

// Strict reports whether a test that lacks a tool fails rather than skips:
// SRS_MESH_E2E_STRICT when it is set to a boolean, otherwise CI=true.
func Strict() bool {
	if v, ok := os.LookupEnv(StrictEnv); ok {
		b, err := strconv.ParseBool(v)
		return err == nil && b
	}
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// Missing ends t because tool cannot be used: the test is skipped with why,
// or, in strict mode (see Strict), fails naming the tool and why, since a
// suite that skips silently proves nothing.
func Missing(t testing.TB, tool, why string) {
	t.Helper()
	if Strict() {
		t.Fatalf("missing tool %s: %s (strict mode: %s or CI=true; set %s=0 to skip instead)", tool, why, StrictEnv, StrictEnv)
		return
	}
	t.Skipf("%s: %s", tool, why)
}

// Missingf is Missing with a formatted reason.
func Missingf(t testing.TB, tool, format string, args ...any) {
	t.Helper()
	Missing(t, tool, fmt.Sprintf(format, args...))
}

// StrictNote says in words whether strict mode is on, for reports.
func StrictNote() string {
	if Strict() {
		return "strict: a missing tool fails"
	}
	return "not strict: a missing tool skips"
}
