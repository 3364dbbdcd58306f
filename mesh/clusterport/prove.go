package clusterport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"

	"github.com/srs-mesh/srs-mesh/mesh/clustertls"
)

// Prove checks, with a mutual-TLS Dialer, that the node that claims to be
// member id answers on its cluster address addr with a certificate of the
// cluster CA (gossip alone proves nothing: metadata is whatever a member
// sends), and that the certificate is not another member's: when it names
// id (common name or subject alternative name, as `srs-mesh tls cert` makes
// them) it is id's; when it names a member known reports, it is refused; a
// certificate that names no member (one shared by the nodes) proves
// membership only. ctx bounds the dial and handshake. A Dialer without TLS
// has nothing to prove with and fails.
func (d *Dialer) Prove(ctx context.Context, id, addr string, known func(name string) bool) error {
	c, err := d.Dial(ctx, addr, ServiceHTTP)
	if err != nil {
		return err
	}
	defer c.Close()
	tc, ok := c.(*tls.Conn)
	if !ok {
		return errors.New("cluster port answered without TLS")
	}
	names, err := clustertls.PeerNames(tc.ConnectionState())
	if err != nil {
		return err
	}
	if slices.Contains(names, id) {
		return nil
	}
	for _, name := range names {
		if known(name) {
			return fmt.Errorf("its certificate is member %q's", name)
		}
	}
	return nil
}
