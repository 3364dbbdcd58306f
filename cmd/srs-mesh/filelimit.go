package main

import "log/slog"

// fdReserve is what a node keeps for itself beyond its clients: origin
// legs (one per stream and node for fan-out players), Raft, gossip, the
// API ports and files.
const fdReserve = 1024

// logFileLimit logs the file descriptors the node may open and what its
// connection caps need (RTMP players and the streaming port's players at
// their caps together, and fdReserve), and warns when even one of the caps
// would reach the limit first: past the limit, accepting a connection
// fails (EMFILE), the listener backs off and retries, and the client waits,
// without a clear refusal. The streaming port is the one HTTP port counted:
// the API ports carry few connections.
func logFileLimit(log *slog.Logger, o serveOptions) {
	soft, hard, err := fileLimit()
	if err != nil {
		return
	}
	both := uint64(o.maxRTMPConns) + uint64(o.maxHTTPConns) + fdReserve
	one := uint64(max(o.maxRTMPConns, o.maxHTTPConns)) + fdReserve
	log.Info("file descriptors", "limit", soft, "hard_limit", hard, "caps_need", both,
		"max_rtmp_conns", o.maxRTMPConns, "max_http_conns", o.maxHTTPConns)
	if o.maxHTTPConns == 0 || soft < one {
		log.Warn("the file descriptor limit is reached before the connection caps, and clients past it wait instead of being refused: "+
			"raise the hard limit (ulimit -Hn, LimitNOFILE=, the container runtime's nofile) or lower --max-rtmp-conns and --max-http-conns",
			"limit", soft, "caps_need", both)
	}
}
