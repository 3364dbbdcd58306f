package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh/activity"
	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/mesh/history"
	"github.com/srs-mesh/srs-mesh/mesh/peers"
	"github.com/srs-mesh/srs-mesh/mesh/state"
	"github.com/srs-mesh/srs-mesh/mesh/streams"
)

type emptyReplica struct{}

func (emptyReplica) Contents() state.Contents { return state.Contents{} }

func newTelemetry(ps []peers.Peer, operator bool) (*Telemetry, *activity.Recorder) {
	act := activity.New()
	return New(Config{
		NodeID:     "n1",
		Peers:      func() []peers.Peer { return ps },
		Asker:      peers.Asker{Client: &http.Client{}},
		Replica:    emptyReplica{},
		Activity:   act,
		Throughput: func() (uint64, uint64) { return 1000, 2000 },
		Serving:    func() history.Counters { return history.Counters{FanOutPlayers: 3, FanOutUpstreams: 1} },
		Operator:   func(*http.Request) bool { return operator },
	}), act
}

// TestSampleCountsClientsNotUpstreams: a sample counts the node's client
// sessions by protocol and its assignment writes, and leaves out the node's
// own shared upstreams.
func TestSampleCountsClientsNotUpstreams(t *testing.T) {
	tel, act := newTelemetry(nil, true)
	defer act.Begin("v/live/a", "rtmp", "publish")()
	defer act.Begin("v/live/a", "flv", "play")()
	defer act.Begin("v/live/a", streams.ProtoUpstream, "")()
	tel.CountAssignment()
	tel.sample(time.Unix(100, 0))
	tel.sample(time.Unix(105, 0))
	s := tel.LocalHistory().Samples
	if len(s) == 0 {
		t.Fatal("no samples")
	}
	last := s[len(s)-1]
	if last.Sessions["rtmp"] != 1 || last.Sessions["flv"] != 1 || last.Sessions[streams.ProtoUpstream] != 0 {
		t.Fatalf("sessions %v", last.Sessions)
	}
}

// TestEventsRedactedForNonOperators: why an origin went down and why
// players were lost reach operators only; members get the log whole.
func TestEventsRedactedForNonOperators(t *testing.T) {
	for _, operator := range []bool{false, true} {
		tel, _ := newTelemetry(nil, operator)
		tel.Record(events.Event{Kind: events.OriginDown, Origin: "o1", Detail: "dial tcp 10.0.0.5:1935: connection refused"})
		rec := httptest.NewRecorder()
		tel.HandleEvents(rec, httptest.NewRequest("GET", "/mesh/v1/events", nil))
		leaked := strings.Contains(rec.Body.String(), "10.0.0.5")
		if leaked != operator {
			t.Errorf("operator %v: answer %s", operator, rec.Body)
		}
		rec = httptest.NewRecorder()
		tel.HandleInternalLocalEvents(rec, httptest.NewRequest("GET", PathLocalEvents, nil))
		if !strings.Contains(rec.Body.String(), "10.0.0.5") {
			t.Errorf("members get the log redacted: %s", rec.Body)
		}
	}
	rec := httptest.NewRecorder()
	tel, _ := newTelemetry(nil, true)
	tel.HandleEvents(rec, httptest.NewRequest("GET", "/mesh/v1/events?limit=0", nil))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("limit=0: %d", rec.Code)
	}
}

// TestClusterDocumentsAskEveryPeerOnce: each cluster-wide document asks every
// listed peer once for its own path, and a peer's events are attributed to
// that peer whatever it claims.
func TestClusterDocumentsAskEveryPeerOnce(t *testing.T) {
	var asked atomic.Int32
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		switch r.URL.Path {
		case PathLocalEvents:
			w.Write([]byte(`{"node":"n2","events":[{"time_unix_ms":5,"node":"n9","kind":"leader","seq":1}]}`))
		case PathLocalHistory:
			w.Write([]byte(`{"node":"n2","interval_ms":5000,"samples":[]}`))
		case streams.PathLocal:
			w.Write([]byte(`{"node":"n2","streams":[{"key":"v/live/a","clients":{"flv":2}}]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer peer.Close()
	tel, _ := newTelemetry([]peers.Peer{{ID: "n2", Addr: strings.TrimPrefix(peer.URL, "http://")}, {ID: "n3", Skip: "gossip state dead"}}, true)
	ctx := context.Background()

	ev := tel.ClusterEvents(ctx, 10)
	if len(ev.Events) != 1 || ev.Events[0].Node != "n2" || len(ev.Nodes) != 3 || ev.Nodes[2].OK {
		t.Fatalf("events %+v", ev)
	}
	h := tel.ClusterHistory(ctx)
	if len(h.Nodes) != 3 || !h.Nodes[1].OK || h.Nodes[1].IntervalMs != 5000 {
		t.Fatalf("history %+v", h)
	}
	st := tel.ClusterStreams(ctx)
	if len(st.Streams) != 1 || st.Streams[0].TotalClients != 2 || st.Streams[0].Nodes["n2"] != 2 {
		t.Fatalf("streams %+v", st)
	}
	if asked.Load() != 3 {
		t.Fatalf("the peer was asked %d times for three documents", asked.Load())
	}
}
