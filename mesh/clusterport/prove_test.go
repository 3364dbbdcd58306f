package clusterport

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/clustertls"
)

// A member proves its id with its own certificate; another member's
// certificate is refused; one that names no member proves membership only.
func TestProve(t *testing.T) {
	caCert, caKey, err := clustertls.NewCA("c", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, client := tlsPair(t, caCert, caKey, "n1")
	known := func(name string) bool { return name == "n1" || name == "n2" || name == "n3" }
	for _, tc := range []struct {
		cert, claim string
		wantErr     string
	}{
		{"n2", "n2", ""},
		{"n3", "n2", `member "n3"'s`},
		{"shared", "n2", ""},
	} {
		server, _ := tlsPair(t, caCert, caKey, tc.cert)
		p := listen(t, Options{ServerTLS: server, ClientTLS: client})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := (&Dialer{TLS: client}).Prove(ctx, tc.claim, p.Addr().String(), known)
		cancel()
		if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("certificate of %s claiming %s: %v, want %q", tc.cert, tc.claim, err, tc.wantErr)
		}
		p.Close()
	}
	p := listen(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := (&Dialer{}).Prove(ctx, "n2", p.Addr().String(), known); err == nil {
		t.Error("a plain cluster port proved a member")
	}
}
