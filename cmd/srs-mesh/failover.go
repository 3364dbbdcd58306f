package main

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp"
)

// failoverMetrics counts sessions that rode through an origin failure and
// how long their media stopped.
type failoverMetrics struct {
	log    *slog.Logger
	total  *prometheus.CounterVec
	resume *prometheus.HistogramVec
}

func newFailoverMetrics(reg prometheus.Registerer, log *slog.Logger) *failoverMetrics {
	m := &failoverMetrics{
		log: log,
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
	reg.MustRegister(m.total, m.resume)
	// A mesh that never failed over shows zero rather than no data (rates,
	// dashboards): the series of the RTMP kinds exist from the start.
	for _, kind := range []string{"publish", "play"} {
		m.total.WithLabelValues("rtmp", kind, "ok")
		m.resume.WithLabelValues("rtmp", kind)
	}
	return m
}

// playReattached records a shared player upstream's re-attach (the RTMP
// server's Config.OnReattach).
func (m *failoverMetrics) playReattached(key string, took time.Duration, err error) {
	if err != nil {
		m.total.WithLabelValues("rtmp", "play", "failed").Inc()
		m.log.Warn("players lost their stream: no origin to re-attach to", "stream", key, "after", took.Round(time.Millisecond), "err", err)
		return
	}
	m.total.WithLabelValues("rtmp", "play", "ok").Inc()
	m.resume.WithLabelValues("rtmp", "play").Observe(took.Seconds())
	m.log.Info("players re-attached after an origin failure", "stream", key, "resumed_after", took.Round(time.Millisecond))
}

// Failover records a publisher's failover (the RTMP server's
// Config.Failovers); the RTMP server logs it.
func (m *failoverMetrics) Failover(ev rtmp.FailoverEvent) {
	m.total.WithLabelValues(ev.Proto, ev.Kind, ev.Result).Inc()
	if ev.Result == rtmp.FailoverOK {
		m.resume.WithLabelValues(ev.Proto, ev.Kind).Observe(ev.Duration.Seconds())
	}
}

var _ rtmp.FailoverObserver = (*failoverMetrics)(nil)
