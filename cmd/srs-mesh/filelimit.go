package main

import "log/slog"

// fdsPerHTTPPort is how many of --max-http-conns the file descriptor check
// counts: the streaming port (--http) carries the players; the API ports
// carry few connections.
const fdsPerHTTPPort = 1

// fdReserve is what a node keeps for itself beyond its clients: origin
// legs (one per stream and node for fan-out players), Raft, gossip, the
// API ports and files.
const fdReserve = 1024

// logFileLimit logs the file descriptors the node may open, and warns when
// fewer than its connection caps may need: past the limit, accepting a
// connection fails (EMFILE), the listener backs off and retries, and the
// client waits, without a clear refusal.
func logFileLimit(log *slog.Logger, o serveOptions) {
	soft, hard, err := fileLimit()
	if err != nil {
		return
	}
	need := uint64(o.maxRTMPConns) + uint64(fdsPerHTTPPort*o.maxHTTPConns) + fdReserve
	log.Info("file descriptors", "limit", soft, "hard_limit", hard, "max_rtmp_conns", o.maxRTMPConns, "max_http_conns", o.maxHTTPConns)
	if o.maxHTTPConns == 0 || soft < need {
		log.Warn("the file descriptor limit may be reached before the connection caps, and clients past it wait instead of being refused: "+
			"raise the hard limit (ulimit -Hn, LimitNOFILE=, the container runtime's nofile) or lower --max-rtmp-conns and --max-http-conns",
			"limit", soft, "caps_need", need)
	}
}
