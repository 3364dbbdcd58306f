package main

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/srs-mesh/srs-mesh/mesh"
)

// defaultSystemPort is the port of --system-api, chosen by resolveAddrs.
const defaultSystemPort = "12025"

// resolveAddrs fills the addresses whose default depends on the other
// flags. A lone node (no --join, --bootstrap-expect 1) keeps its cluster
// ports on loopback, so `srs-mesh serve` with no flags is a working, closed
// single node; anything that forms a mesh binds as mesh.DefaultConfig does
// (every interface). The system API binds every interface only when a
// --token protects its writes.
func resolveAddrs(o *serveOptions) {
	d := mesh.DefaultConfig()
	gossip, raft := d.GossipAddr, d.RaftAddr
	if len(o.join) == 0 && o.bootstrapExpect <= 1 {
		loopback := netip.AddrFrom4([4]byte{127, 0, 0, 1})
		gossip, raft = netip.AddrPortFrom(loopback, gossip.Port()), netip.AddrPortFrom(loopback, raft.Port())
	}
	if o.gossipAddr == "" {
		o.gossipAddr = gossip.String()
	}
	if o.raftAddr == "" {
		o.raftAddr = raft.String()
	}
	if o.systemAPI == "" {
		if o.token != "" {
			o.systemAPI = ":" + defaultSystemPort
		} else {
			o.systemAPI = "127.0.0.1:" + defaultSystemPort
		}
	}
}

// insecurities lists why o would run a node that strangers can reach and
// subvert, naming the flags that fix each: cluster ports (gossip, Raft)
// off loopback need the gossip key and the TLS files; a system API off
// loopback needs a token. serve refuses to start with any unless --insecure.
func insecurities(o serveOptions) []string {
	var out []string
	var missing []string
	if o.gossipKey == "" {
		missing = append(missing, "--gossip-key")
	}
	if o.tlsCAFile == "" || o.tlsCertFile == "" || o.tlsKeyFile == "" {
		missing = append(missing, "--tls-ca-file", "--tls-cert-file", "--tls-key-file")
	}
	if len(missing) > 0 {
		for _, a := range []struct{ flag, addr string }{{"--gossip-addr", o.gossipAddr}, {"--raft-addr", o.raftAddr}} {
			if !isLoopback(a.addr) {
				out = append(out, fmt.Sprintf("%s %s is not on loopback and %s %s not set",
					a.flag, a.addr, strings.Join(missing, ", "), isOrAre(len(missing))))
			}
		}
	}
	if o.token == "" && !isLoopback(o.systemAPI) {
		out = append(out, fmt.Sprintf("--system-api %s is not on loopback and --token is not set", o.systemAPI))
	}
	return out
}

func isOrAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

// isLoopback reports whether a bind address "host:port" listens on loopback
// only. An empty or unspecified host (every interface) and host names other
// than localhost are not loopback.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// apiWrites says whether the SRS API port (--api) takes, from anyone, the
// calls that can change an origin (every method but GET, HEAD and OPTIONS,
// and every ?origin= call: DELETE of clients and streams, SRS's raw API,
// anything proxied to an origin) and, when privateReads (some origin's
// HTTP API is sent credentials, so its reads are private at the origin),
// the reads that ask origins (clients, streams, summaries). With --token
// they need the token and open is false. Without one they are open only on
// a port on loopback, or with --insecure, and refused (403) otherwise;
// WebRTC signalling and, without privateReads, the reads are served either
// way, so `srs-mesh serve` with no flags starts and plays. note is a line
// for the log at start ("" when nothing is worth saying); insecure marks
// it as a warning.
func apiWrites(o serveOptions, privateReads bool) (open bool, note string, insecure bool) {
	if o.apiAddr == "" {
		return false, "", false
	}
	if o.token != "" {
		if privateReads {
			return false, "origins' HTTP APIs are sent credentials: SRS API reads that ask origins (clients, streams, summaries) need --token, as the calls that change an origin do", false
		}
		return false, "", false
	}
	if isLoopback(o.apiAddr) {
		return true, "", false
	}
	if o.insecure {
		if privateReads {
			return true, fmt.Sprintf("--api %s is not on loopback and --token is not set: anyone may call what changes an origin (DELETE, raw, ?origin=) and read what origins with API credentials keep private (clients, streams, summaries)", o.apiAddr), true
		}
		return true, fmt.Sprintf("--api %s is not on loopback and --token is not set: anyone may call what changes an origin (DELETE, raw, ?origin=)", o.apiAddr), true
	}
	if privateReads {
		return false, fmt.Sprintf("--api %s is not on loopback and --token is not set: SRS API calls that can change an origin (every method but GET, HEAD and OPTIONS, and ?origin=), and reads that ask origins (clients, streams, summaries) as origins' HTTP APIs are sent credentials, are refused with 403; /api/v1/versions and WebRTC signalling are served. Set --token to use them", o.apiAddr), false
	}
	return false, fmt.Sprintf("--api %s is not on loopback and --token is not set: SRS API calls that can change an origin (every method but GET, HEAD and OPTIONS, and ?origin=) are refused with 403; reads and WebRTC signalling are served. Set --token to use them", o.apiAddr), false
}
