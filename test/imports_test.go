package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportRules enforces the layering: cmd -> mesh, protocols/* -> stream.
// Protocol packages never import mesh or each other, stream imports nothing
// of ours, and mesh imports no protocol. Support shared by protocols (such as
// protocols/internal/drain) lives under protocols/internal and imports only
// stream.
func TestImportRules(t *testing.T) {
	const mod = "github.com/srs-mesh/srs-mesh/"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], mod)
		for _, imp := range fields[1:] {
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			dep := strings.TrimPrefix(imp, mod)
			switch {
			case pkg == "stream" && dep != "stream":
				t.Errorf("stream imports %s: the domain package imports nothing of ours", dep)
			case strings.HasPrefix(pkg, "protocols/") && strings.HasPrefix(dep, "mesh"):
				t.Errorf("%s imports %s: protocols declare the interface they need instead", pkg, dep)
			case strings.HasPrefix(pkg, "protocols/internal/") && dep != "stream" && !strings.HasPrefix(dep, "protocols/internal/"):
				t.Errorf("%s imports %s: shared protocol support imports only stream", pkg, dep)
			case strings.HasPrefix(pkg, "protocols/") && strings.HasPrefix(dep, "protocols/") &&
				!strings.HasPrefix(dep, "protocols/internal/") && protocolOf(pkg) != protocolOf(dep):
				t.Errorf("%s imports %s: protocols do not import each other", pkg, dep)
			case strings.HasPrefix(pkg, "mesh") && strings.HasPrefix(dep, "protocols/"):
				t.Errorf("%s imports %s: mesh knows no protocol", pkg, dep)
			case !strings.HasPrefix(pkg, "cmd/") && !strings.HasPrefix(pkg, "test") && strings.HasPrefix(dep, "cmd/"):
				t.Errorf("%s imports %s", pkg, dep)
			}
		}
	}
}

// protocolOf returns "protocols/rtmp" for "protocols/rtmp/chunk".
func protocolOf(pkg string) string {
	parts := strings.SplitN(pkg, "/", 3)
	if len(parts) < 2 {
		return pkg
	}
	return parts[0] + "/" + parts[1]
}

// TestModTidy: go.mod and go.sum are as `go mod tidy` leaves them, so every
// module we import directly is a direct requirement.
func TestModTidy(t *testing.T) {
	out, err := exec.Command("go", "mod", "tidy", "-diff").CombinedOutput()
	if err != nil {
		t.Fatalf("go mod tidy -diff: %v\n%s", err, out)
	}
}
