package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/srs-mesh/srs-mesh/protocols/webrtc"
	"github.com/srs-mesh/srs-mesh/protocols/webrtc/sfu"
	"github.com/srs-mesh/srs-mesh/stream"
)

// newRTCFanOut is the node's WebRTC fan-out (--rtc-fanout): viewers
// answered at the node on the relay's port pc, announced at candidate.
// The relay (stored in relay once created) taps their flows off its port
// and writes for them. Each viewer's ICE session is stored in the mesh's
// session table naming this node (its advertise address with the --rtc
// and --api ports) as its origin, so that a viewer's UDP reaching another
// node is relayed here, and a DELETE through another node is forwarded
// here. tcp, when not nil, is the --rtc-tcp listener (ICE-TCP); the
// fan-out owns it.
func newRTCFanOut(o serveOptions, pc net.PacketConn, tcp net.Listener, router stream.Router, sessions stream.Sessions, store webrtc.SessionStore,
	activity webrtc.SessionActivity, candidate netip.AddrPort, advertise netip.Addr, relay *atomic.Pointer[webrtc.Server], backup sfuBackup, log *slog.Logger) (*sfu.Server, error) {
	if o.rtcMaxViewers < 1 || o.rtcStreamViewers < 1 {
		return nil, fmt.Errorf("--rtc-max-viewers and --rtc-max-stream-viewers must be at least 1")
	}
	ua, ok := pc.LocalAddr().(*net.UDPAddr)
	if !ok {
		return nil, fmt.Errorf("--rtc: not a UDP socket: %v", pc.LocalAddr())
	}
	self := netip.AddrPortFrom(advertise, ua.AddrPort().Port())
	api := ""
	if o.apiAddr != "" {
		if _, port, err := net.SplitHostPort(o.apiAddr); err == nil {
			api = net.JoinHostPort(advertise.String(), port)
		}
	}
	if o.rtcViewerMbps < 0 {
		return nil, fmt.Errorf("--rtc-viewer-bitrate must not be negative")
	}
	bitrate := int64(o.rtcViewerMbps * 1e6)
	if bitrate == 0 {
		bitrate = -1 // no cap
	}
	var tcpCand netip.AddrPort
	if tcp != nil {
		var err error
		if tcpCand, err = rtcTCPCandidate(o.rtcTCPCandidate, candidate, tcp); err != nil {
			return nil, err
		}
	}
	uc, _ := pc.(*net.UDPConn) // the fan-out writes to it in batches
	return sfu.New(sfu.Config{Router: router, Conn: uc, TCP: tcp, TCPCandidate: tcpCand, ViewerBitrate: bitrate, Candidate: candidate, LocalAddr: ua.AddrPort(), Sessions: sessions,
		Store: store, Activity: activity, NodeID: o.nodeID, NodeRTC: self, NodeAPI: api,
		Logger: log.With("proto", "webrtc"), MaxViewers: o.rtcMaxViewers, MaxViewersPerStream: o.rtcStreamViewers,
		// --reattach-timeout 0 ends them at once.
		ReattachTimeout: max(o.reattach, time.Nanosecond),
		// Backup WHIP publishers (--backup-publish).
		Publisher: backup.publisher, Assignments: backup.assignments, Standbys: backup.observer, StandbyGate: backup.gate,
		Write: func(p []byte, to netip.AddrPort) (int, error) {
			if r := relay.Load(); r != nil {
				return r.WriteToUDPAddrPort(p, to)
			}
			return 0, webrtc.ErrClosed
		}})
}

// sfuBackup is what the fan-out's backup WHIP publishers need from the
// node: publish routing, the streams' assignments and the standby
// reporting.
type sfuBackup struct {
	publisher   stream.Publisher
	assignments sfu.Assignments
	observer    sfu.StandbyObserver
	gate        sfu.StandbyGate
}

var (
	descRTCViewers   = prometheus.NewDesc(ns+"_rtc_fanout_viewers", "WebRTC viewers answered at this node (--rtc-fanout).", nil, nil)
	descRTCUpstreams = prometheus.NewDesc(ns+"_rtc_fanout_upstreams", "WebRTC upstreams of this node's viewers: one WHEP session at an origin per stream and query.", nil, nil)
	descRTCTCPConns  = prometheus.NewDesc(ns+"_rtc_fanout_tcp_connections", "ICE-TCP connections open on --rtc-tcp.", nil, nil)
	descRTCRatio     = prometheus.NewDesc(ns+"_rtc_fanout_ratio", "WebRTC viewers per upstream on this node.", nil, nil)
	descRTCNacks     = prometheus.NewDesc(ns+"_rtc_fanout_nacks_total", "Packets WebRTC viewers asked again for (NACK), by result: served (from the node's cache), missed (no longer cached).",
		[]string{"result"}, nil)
	descRTCKeyframes = prometheus.NewDesc(ns+"_rtc_fanout_keyframe_requests_total", "Keyframe needs of WebRTC viewers (PLI, FIR, new viewers, skips), by where they went: upstream (a PLI sent to the origin), aggregated (within the rate limit of one already sent).",
		[]string{"result"}, nil)
	descRTCDropped = prometheus.NewDesc(ns+"_rtc_fanout_dropped_total", "What WebRTC fan-out dropped, by action: skipped (a viewer that fell behind dropped video to the next keyframe), kicked (a viewer disconnected for falling behind again), packets (RTP packets dropped from full viewer queues), bitrate (packets and retransmissions beyond a viewer's --rtc-viewer-bitrate), send_error (packets the socket refused), tcp_refused (ICE-TCP connections closed at once for the connection cap), port (viewers' packets dropped before the node read them), integrity (Binding requests from a new address without a valid MESSAGE-INTEGRITY).",
		[]string{"action"}, nil)
	descRTCReattaches = prometheus.NewDesc(ns+"_rtc_fanout_reattaches_total", "WebRTC upstreams re-attached to a stream's origin (moves, failures) while viewers stayed connected; failed: attempts that failed; codec_changed: upstreams whose new origin sent another codec than the viewers play, whose viewers were ended.",
		[]string{"result"}, nil)
	descRTCPackets = prometheus.NewDesc(ns+"_rtc_fanout_packets_total", "RTP packets of WebRTC fan-out, by direction: origin_to_node (upstreams), node_to_client (viewers).",
		[]string{"direction"}, nil)
)

// collectRTCFanOut reports the fan-out's counters.
func collectRTCFanOut(ch chan<- prometheus.Metric, st sfu.Stats) {
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	gauge(descRTCViewers, float64(st.Viewers))
	gauge(descRTCUpstreams, float64(st.Upstreams))
	gauge(descRTCRatio, st.Ratio)
	counter(descRTCNacks, st.NACKsServed, "served")
	counter(descRTCNacks, st.NACKs-min(st.NACKs, st.NACKsServed), "missed")
	counter(descRTCKeyframes, st.PLIsUpstream, "upstream")
	counter(descRTCKeyframes, st.KeyframeRequests-min(st.KeyframeRequests, st.PLIsUpstream), "aggregated")
	counter(descRTCDropped, st.Skipped, "skipped")
	counter(descRTCDropped, st.Kicked, "kicked")
	counter(descRTCDropped, st.QueueDrops, "packets")
	counter(descRTCDropped, st.RateDrops, "bitrate")
	counter(descRTCDropped, st.SendErrors, "send_error")
	counter(descRTCDropped, st.TCPRefused, "tcp_refused")
	gauge(descRTCTCPConns, float64(st.TCPConns))
	counter(descRTCDropped, st.PortDrops, "port")
	counter(descRTCDropped, st.Integrity, "integrity")
	counter(descRTCReattaches, st.Reattaches, "ok")
	counter(descRTCReattaches, st.UpstreamFailures, "failed")
	counter(descRTCReattaches, st.CodecChanges, "codec_changed")
	counter(descRTCPackets, st.PacketsIn, "origin_to_node")
	counter(descRTCPackets, st.PacketsOut, "node_to_client")
}
