package webrtc

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/srs-mesh/srs-mesh/stream"
)

// FuzzJSONAPI feeds SRS's JSON signalling API (POST /rtc/v1/publish/) an
// arbitrary client body and an arbitrary origin answer. Whatever arrives,
// the handler answers with a status and, for its own errors, a JSON body
// with a non-zero code; it never panics, and a session is stored only for
// an answer that carries a valid SDP.
func FuzzJSONAPI(f *testing.F) {
	good, _ := json.Marshal(map[string]string{"api": "http://h/rtc/v1/publish/", "sdp": offerSDP,
		"streamurl": "webrtc://127.0.0.1/live/s", "tid": "1"})
	answer, _ := json.Marshal(map[string]any{"code": 0, "server": "vid-1", "sessionid": "a:b",
		"sdp": strings.ReplaceAll(offerSDP, "off1", "ans1")})
	f.Add(good, answer)
	f.Add(good, []byte(`{"code":400,"message":"stream busy"}`))
	f.Add(good, []byte(`{"code":0,"sdp":"not an sdp"}`))
	f.Add([]byte(`{"sdp":"","streamurl":"webrtc://h/s"}`), answer)
	f.Add([]byte(`{"sdp":1}`), answer)
	f.Add([]byte(`[`), []byte(`]`))

	var reply atomic.Value
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(reply.Load().([]byte))
	}))
	defer origin.Close()
	store := NewMemorySessionStore()
	srv, err := New(Config{
		Router:    &fakeRouter{origin: stream.Origin{ID: "o1", API: strings.TrimPrefix(origin.URL, "http://"), RTC: "127.0.0.1:9"}},
		Store:     store,
		Logger:    quietLogger(),
		Candidate: netip.MustParseAddrPort("127.0.0.1:8000"),
		OfferRate: -1, // every input comes from one address
	})
	if err != nil {
		f.Fatal(err)
	}
	defer srv.Close()
	h := srv.Handler()

	f.Fuzz(func(t *testing.T, body, originAnswer []byte) {
		reply.Store(originAnswer)
		before := store.Len()
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/rtc/v1/publish/", strings.NewReader(string(body)))
		h.ServeHTTP(rec, req)
		if rec.Code == 0 {
			t.Fatal("no status")
		}
		if rec.Code >= 400 && rec.Header().Get("Content-Type") == "application/json" {
			var e struct {
				Code int `json:"code"`
			}
			if json.Unmarshal(rec.Body.Bytes(), &e) != nil {
				// The origin's own error body is passed through as is.
				if !strings.Contains(rec.Body.String(), string(originAnswer)) {
					t.Fatalf("status %d with a body that is neither JSON nor the origin's: %q", rec.Code, rec.Body.String())
				}
			}
		}
		if store.Len() > before {
			var res struct {
				SDP string `json:"sdp"`
			}
			if json.Unmarshal(rec.Body.Bytes(), &res) != nil || !strings.Contains(res.SDP, "a=candidate:") {
				t.Fatalf("session stored but the client got no rewritten answer: %d %q", rec.Code, rec.Body.String())
			}
		}
	})
}
