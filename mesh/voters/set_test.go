package voters

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// fakeRaft is a Raft configuration in memory that records each change.
type fakeRaft struct {
	mu      sync.Mutex
	servers []raft.Server
	calls   []string
}

type future struct {
	err  error
	conf raft.Configuration
}

func (f future) Error() error                      { return f.err }
func (f future) Index() uint64                     { return 0 }
func (f future) Configuration() raft.Configuration { return f.conf }

func (r *fakeRaft) GetConfiguration() raft.ConfigurationFuture {
	r.mu.Lock()
	defer r.mu.Unlock()
	return future{conf: raft.Configuration{Servers: append([]raft.Server(nil), r.servers...)}}
}

func (r *fakeRaft) set(id raft.ServerID, addr raft.ServerAddress, s raft.ServerSuffrage, call string) raft.IndexFuture {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call+" "+string(id))
	for i := range r.servers {
		if r.servers[i].ID == id {
			r.servers[i].Suffrage = s
			return future{}
		}
	}
	r.servers = append(r.servers, raft.Server{ID: id, Address: addr, Suffrage: s})
	return future{}
}

func (r *fakeRaft) AddVoter(id raft.ServerID, a raft.ServerAddress, _ uint64, _ time.Duration) raft.IndexFuture {
	return r.set(id, a, raft.Voter, "add-voter")
}
func (r *fakeRaft) AddNonvoter(id raft.ServerID, a raft.ServerAddress, _ uint64, _ time.Duration) raft.IndexFuture {
	return r.set(id, a, raft.Nonvoter, "add-nonvoter")
}
func (r *fakeRaft) DemoteVoter(id raft.ServerID, _ uint64, _ time.Duration) raft.IndexFuture {
	return r.set(id, "", raft.Nonvoter, "demote")
}
func (r *fakeRaft) RemoveServer(id raft.ServerID, _ uint64, _ time.Duration) raft.IndexFuture {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "remove "+string(id))
	for i := range r.servers {
		if r.servers[i].ID == id {
			r.servers = append(r.servers[:i], r.servers[i+1:]...)
			break
		}
	}
	return future{}
}
func (r *fakeRaft) RegisterObserver(*raft.Observer)   {}
func (r *fakeRaft) DeregisterObserver(*raft.Observer) {}
func (r *fakeRaft) Stats() map[string]string {
	return map[string]string{"term": "4", "last_log_index": "100"}
}
func (r *fakeRaft) AppliedIndex() uint64 { return 100 }

func (r *fakeRaft) took() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := strings.Join(r.calls, ", ")
	r.calls = nil
	return out
}

// testSet is a Set led by n1 over the members addrs names (each answers its
// progress at one test server), with alive members alive and a clock the
// test moves.
type testSet struct {
	*Set
	raft  *fakeRaft
	alive []string
	left  map[string]bool
	now   time.Time
}

func newTestSet(t *testing.T, voters, nonvoters []string) *testSet {
	ts := &testSet{raft: &fakeRaft{}, left: map[string]bool{}, now: time.Unix(1000, 0)}
	progress := New(Config{Raft: ts.raft})
	srv := httptest.NewServer(http.HandlerFunc(progress.HandleProgress))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, id := range voters {
		ts.raft.servers = append(ts.raft.servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(addr), Suffrage: raft.Voter})
		ts.alive = append(ts.alive, id)
	}
	for _, id := range nonvoters {
		ts.raft.servers = append(ts.raft.servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(addr), Suffrage: raft.Nonvoter})
		ts.alive = append(ts.alive, id)
	}
	ts.Set = New(Config{
		Self: Member{ID: "n1", Addr: addr}, Voters: 3, Floor: 3, ReapTimeout: time.Minute, Raft: ts.raft,
		Alive: func() []Member {
			var out []Member
			for _, id := range ts.alive {
				out = append(out, Member{ID: id, Addr: addr})
			}
			return out
		},
		Left:         func(id string) bool { return ts.left[id] },
		RecentlyLeft: func(id string) bool { return ts.left[id] },
		MarkLeft:     func(id string) { ts.left[id] = true },
		Client:       srv.Client(),
		Now:          func() time.Time { return ts.now },
	})
	return ts
}

func (ts *testSet) kill(id string) {
	for i, a := range ts.alive {
		if a == id {
			ts.alive = append(ts.alive[:i], ts.alive[i+1:]...)
			return
		}
	}
}

// A failed voter is replaced after ReapTimeout, by its clock: the
// non-voter is promoted first, the failed voter removed second.
func TestReconcileReplacesAFailedVoter(t *testing.T) {
	ts := newTestSet(t, []string{"n1", "n2", "n3"}, []string{"n4"})
	ctx := context.Background()
	reap := map[string]time.Time{}
	ts.kill("n2")
	ts.Reconcile(ctx, reap)
	if got := ts.raft.took(); got != "" {
		t.Fatalf("changes before the reap timeout: %s", got)
	}
	ts.now = ts.now.Add(time.Minute)
	ts.Reconcile(ctx, reap)
	if got, want := ts.raft.took(), "add-voter n4, remove n2"; got != want {
		t.Fatalf("changes %q, want %q", got, want)
	}
	if c := ts.Count(); c != 3 {
		t.Fatalf("%d voters, want 3", c)
	}
}

// A new member joins as a non-voter once the set is full; a set short of
// voters promotes it.
func TestReconcileAddsAndPromotes(t *testing.T) {
	ts := newTestSet(t, []string{"n1", "n2"}, nil)
	ts.alive = append(ts.alive, "n3", "n4")
	ts.Reconcile(context.Background(), map[string]time.Time{})
	if got, want := ts.raft.took(), "add-voter n3, add-nonvoter n4"; got != want {
		t.Fatalf("changes %q, want %q", got, want)
	}
	ts.raft.servers[2].Suffrage = raft.Nonvoter // n3 as if added by an older leader
	ts.Reconcile(context.Background(), map[string]time.Time{})
	if got, want := ts.raft.took(), "add-voter n3"; got != want {
		t.Fatalf("changes %q, want %q", got, want)
	}
}

// A leaving voter is replaced, then removed; one whose removal would leave
// fewer voters than the floor stays.
func TestRemoveLeaving(t *testing.T) {
	ts := newTestSet(t, []string{"n1", "n2", "n3"}, []string{"n4"})
	removed, err := ts.RemoveLeaving(context.Background(), "n3")
	if err != nil || !removed || !ts.left["n3"] {
		t.Fatalf("RemoveLeaving(n3) = %v, %v; marked left %v", removed, err, ts.left["n3"])
	}
	if got, want := ts.raft.took(), "add-voter n4, remove n3"; got != want {
		t.Fatalf("changes %q, want %q", got, want)
	}
	removed, err = ts.RemoveLeaving(context.Background(), "n2")
	if err != nil || removed {
		t.Fatalf("RemoveLeaving(n2) below the floor = %v, %v", removed, err)
	}
	if removed, err := ts.RemoveLeaving(context.Background(), "n9"); err != nil || !removed {
		t.Fatalf("RemoveLeaving of a stranger = %v, %v", removed, err)
	}
}
