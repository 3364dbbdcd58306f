package rtmp

import (
	"go/build"
	"strings"
	"testing"
)

// TestImports: the RTMP proxy depends on the domain package, the shared
// protocol support under protocols/internal, the fan-out room
// (protocols/fanout) and the standard library only;
// never on the mesh or another protocol.
func TestImports(t *testing.T) {
	for _, dir := range []string{".", "amf0", "chunk", "handshake"} {
		pkg, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range pkg.Imports {
			if !strings.Contains(imp, ".") {
				continue // standard library
			}
			if imp == "github.com/srs-mesh/srs-mesh/stream" || strings.HasPrefix(imp, "github.com/srs-mesh/srs-mesh/protocols/rtmp/") ||
				strings.HasPrefix(imp, "github.com/srs-mesh/srs-mesh/protocols/internal/") || imp == "github.com/srs-mesh/srs-mesh/protocols/fanout" {
				continue
			}
			t.Errorf("%s imports %s", dir, imp)
		}
	}
}
