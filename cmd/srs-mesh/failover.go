package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/protocols/fanout"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp"
	"github.com/srs-mesh/srs-mesh/protocols/webrtc/sfu"
)

// failoverMetrics counts sessions that rode through an origin failure and
// how long their media stopped.
type failoverMetrics struct {
	log    *slog.Logger
	events events.Recorder // the node's event log
	total  *prometheus.CounterVec
	resume *prometheus.HistogramVec
	// gap is the players' frame gap at each switch of a shared upstream.
	gap *prometheus.HistogramVec
	// standby counts standby publishers kept and promoted; takeover is
	// the time from the active publisher's end to the standby's media
	// reaching the origin.
	standby  *prometheus.CounterVec
	takeover prometheus.Histogram
	// drops counts RTMP publishers that dropped (see PublisherDropped).
	drops prometheus.Counter
}

func newFailoverMetrics(reg prometheus.Registerer, log *slog.Logger, ev events.Recorder) *failoverMetrics {
	m := &failoverMetrics{
		log: log, events: ev,
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns,
			Name:      "failovers_total",
			Help:      "Sessions moved to another origin without the client noticing, by protocol, kind (publish; play: one per shared upstream of a node's RTMP and HTTP-FLV players) and result (ok; failed, no_origin, refused, abandoned).",
		}, []string{"proto", "kind", "result"}),
		resume: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns,
			Name:      "failover_resume_seconds",
			Help:      "Time from an origin leg's failure to media flowing again through the new origin, by protocol and kind.",
			Buckets:   []float64{.1, .25, .5, 1, 2, 3, 5, 7.5, 10, 15},
		}, []string{"proto", "kind"}),
	}
	m.gap = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: ns,
		Name:      "switch_gap_seconds",
		Help:      "The frame gap players saw when their shared upstream switched origin, by protocol (fanout: a node's RTMP and HTTP-FLV players) and kind (planned: a move without a break; failover: the origin failed; publisher: the stream was published again within the publisher grace).",
		Buckets:   []float64{.01, .025, .05, .1, .25, .5, 1, 2, 5, 10},
	}, []string{"proto", "kind"})
	m.standby = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns,
		Name:      "standby_publishers_total",
		Help:      "Backup encoders (--backup-publish) by event: standby (a second publisher of a live stream kept as its standby), promoted (a standby took over the stream), stalled (an active publisher sent no media for --publish-stall and was ended).",
	}, []string{"event"})
	m.takeover = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: ns,
		Name:      "standby_takeover_seconds",
		Help:      "Time from the active publisher's end, as the standby's node saw it, to the standby's media reaching the origin.",
		Buckets:   []float64{.01, .025, .05, .1, .25, .5, 1, 2, 5},
	})
	m.drops = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: ns,
		Name:      "publisher_drops_total",
		Help:      "RTMP publishers of this node whose connection ended without an unpublish (the encoder crashed, lost its network or was killed), not counting publishes the node ended.",
	})
	m.standby.WithLabelValues(rtmp.StandbyKept)
	m.standby.WithLabelValues(rtmp.StandbyPromoted)
	m.standby.WithLabelValues(rtmp.StandbyStalled)
	reg.MustRegister(m.total, m.resume, m.gap, m.standby, m.takeover, m.drops)
	for _, kind := range []string{fanout.SwitchPlanned, fanout.SwitchFailover, fanout.SwitchPublisher} {
		m.gap.WithLabelValues("fanout", kind)
	}
	// A mesh that never failed over shows zero rather than no data (rates,
	// dashboards): the series of the RTMP kinds exist from the start.
	for _, kind := range []string{"publish", "play"} {
		m.total.WithLabelValues("rtmp", kind, "ok")
		m.resume.WithLabelValues("rtmp", kind)
	}
	return m
}

// playReattached records a shared player upstream's re-attach (the
// fan-out registry's Config.OnReattach): metrics, a log line and an event.
func (m *failoverMetrics) playReattached(r fanout.Reattach) {
	if r.Kind == fanout.SwitchPublisher {
		m.publisherGrace(r)
		return
	}
	st, from, to := fanout.StreamOf(r.Key), r.Origins.From, r.Origins.To
	e := events.Event{Kind: events.PlayersReattached, Stream: st, Origin: to}
	if r.Err != nil {
		m.total.WithLabelValues("rtmp", "play", "failed").Inc()
		m.log.Warn("players lost their stream: no origin to re-attach to", "stream", st, "players", r.Subscribers,
			"after", r.Took.Round(time.Millisecond), "err", r.Err)
		e.Kind, e.Detail = events.PlayersLost, fmt.Sprintf("%s, after %v: %v", players(r.Subscribers), r.Took.Round(time.Millisecond), r.Err)
		m.events.Record(e)
		return
	}
	m.total.WithLabelValues("rtmp", "play", "ok").Inc()
	m.resume.WithLabelValues("rtmp", "play").Observe(r.Took.Seconds())
	m.gap.WithLabelValues("fanout", fanout.SwitchFailover).Observe(r.Gap.Seconds())
	m.log.Info("players re-attached after an origin failure", "stream", st, "from", from, "to", to,
		"players", r.Subscribers, "resumed_after", r.Took.Round(time.Millisecond))
	e.Detail = fmt.Sprintf("%s, from %s, resumed after %v", players(r.Subscribers), from, r.Took.Round(time.Millisecond))
	m.events.Record(e)
}

// publisherGrace records the end of a publisher grace of a node's shared
// upstream: the stream published again (the players' gap), or not.
func (m *failoverMetrics) publisherGrace(r fanout.Reattach) {
	st := fanout.StreamOf(r.Key)
	if r.Err != nil {
		m.log.Info("players ended: the publisher did not come back within the grace", "stream", st,
			"players", r.Subscribers, "after", r.Took.Round(time.Millisecond))
		m.events.Record(events.Event{Kind: events.PublisherLost, Stream: st,
			Detail: fmt.Sprintf("%s ended after %v", players(r.Subscribers), r.Took.Round(time.Millisecond))})
		return
	}
	m.gap.WithLabelValues("fanout", fanout.SwitchPublisher).Observe(r.Gap.Seconds())
	m.log.Info("players resumed: the stream was published again within the grace", "stream", st,
		"players", r.Subscribers, "gap", r.Gap.Round(time.Millisecond))
	m.events.Record(events.Event{Kind: events.PublisherReturned, Stream: st,
		Detail: fmt.Sprintf("%s resumed after %v", players(r.Subscribers), r.Gap.Round(time.Millisecond))})
}

// Failover records a publisher's failover (the RTMP server's
// Config.Failovers); the RTMP server logs it.
// playSwitched records a planned switch of a shared upstream (a move
// without a break): the players' gap, or why it fell back.
func (m *failoverMetrics) playSwitched(r fanout.Reattach) {
	st := fanout.StreamOf(r.Key)
	if r.Err != nil {
		m.log.Info("players stay on their origin: the planned switch gave up", "stream", st, "err", r.Err)
		return
	}
	m.gap.WithLabelValues("fanout", fanout.SwitchPlanned).Observe(r.Gap.Seconds())
	m.log.Info("players switched origin without a break", "stream", st, "from", r.Origins.From, "to", r.Origins.To,
		"players", r.Subscribers, "gap", r.Gap.Round(time.Millisecond), "aligned", r.Aligned, "repeats_dropped", r.Repeats)
}

func (m *failoverMetrics) Failover(ev rtmp.FailoverEvent) {
	m.total.WithLabelValues(ev.Proto, ev.Kind, ev.Result).Inc()
	if ev.Result == rtmp.FailoverOK {
		m.resume.WithLabelValues(ev.Proto, ev.Kind).Observe(ev.Duration.Seconds())
	}
}

var _ rtmp.FailoverObserver = (*failoverMetrics)(nil)

// Standby records a backup encoder's events (the RTMP server's
// Config.Standbys): metrics and, at a promotion, a publisher_switched event.
func (m *failoverMetrics) Standby(ev rtmp.StandbyEvent) {
	m.standby.WithLabelValues(ev.Kind).Inc()
	if ev.Kind == rtmp.StandbyStalled {
		m.events.Record(events.Event{Kind: events.PublisherLost, Stream: ev.Key.String(), Origin: ev.Origin,
			Detail: fmt.Sprintf("the publisher %s sent no media for %v and was ended", ev.Peer, ev.Gap.Round(time.Millisecond))})
		return
	}
	if ev.Kind != rtmp.StandbyPromoted {
		return
	}
	m.takeover.Observe(ev.Gap.Seconds())
	m.events.Record(events.Event{Kind: events.PublisherSwitched, Stream: ev.Key.String(), Origin: ev.Origin,
		Detail: fmt.Sprintf("the standby publisher %s took over after %v", ev.Peer, ev.Gap.Round(time.Millisecond))})
}

var _ rtmp.StandbyObserver = (*failoverMetrics)(nil)

// PublisherDropped records an RTMP publisher of this node that dropped
// (the RTMP server's Config.PublisherDrops): a publisher_dropped event and
// a count. Players then ride through their publisher grace, which records
// its own event when it ends.
func (m *failoverMetrics) PublisherDropped(d rtmp.PublisherDrop) {
	m.drops.Inc()
	why := "closed its connection"
	if d.Err != nil {
		why = d.Err.Error()
	}
	m.log.Info("publisher dropped without unpublishing", "stream", d.Key.String(), "peer", d.Peer, "origin", d.Origin,
		"published", d.Published.Round(time.Second), "why", why)
	m.events.Record(events.Event{Kind: events.PublisherDropped, Stream: d.Key.String(), Origin: d.Origin,
		Detail: fmt.Sprintf("the publisher %s dropped after %v without unpublishing: %s", d.Peer, d.Published.Round(time.Second), why)})
}

var _ rtmp.PublisherDropObserver = (*failoverMetrics)(nil)

// players is "1 player" or "n players".
func players(n int) string {
	if n == 1 {
		return "1 player"
	}
	return fmt.Sprintf("%d players", n)
}

// whipStandbys reports the WebRTC fan-out's backup WHIP publishers
// (sfu Config.Standbys) through the RTMP server's standby reporting, so
// that both count in the same metrics and events.
type whipStandbys struct{ m *failoverMetrics }

func (w whipStandbys) Standby(ev sfu.StandbyEvent) {
	w.m.Standby(rtmp.StandbyEvent{Key: ev.Key, Peer: "whip:" + ev.Peer, Kind: ev.Kind, Origin: ev.Origin, Gap: ev.Gap})
}

var _ sfu.StandbyObserver = whipStandbys{}
