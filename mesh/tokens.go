package mesh

// The segment-token key and the origins whose segments a token may name.

// TokenKey returns the mesh's segment-token key, random and replicated (the
// first leader writes it), or false while it is not known here yet.
func (n *Node) TokenKey() ([]byte, bool) { return n.fsm.TokenKey() }

// KnownHTTPOrigin reports whether hostport is the HTTP endpoint of an origin
// the mesh knows: segment tokens are honoured only for those.
func (n *Node) KnownHTTPOrigin(hostport string) bool { return n.fsm.HasHTTPEndpoint(hostport) }
