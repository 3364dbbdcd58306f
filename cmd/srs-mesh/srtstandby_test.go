package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/stream"
)

func TestLiveOnOrigin(t *testing.T) {
	var status int
	var body, auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		if r.URL.Path != "/api/v1/streams/" || r.URL.Query().Get("count") != "1000" {
			t.Errorf("asked %s", r.URL)
		}
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	defer srv.Close()
	creds := func(id string) string {
		if id == "o1" {
			return "Basic eDp5"
		}
		return ""
	}
	live := liveOnOrigin(newSRTLiveClient(), creds, nil)
	key := stream.Key{Vhost: stream.DefaultVhost, App: "live", Stream: "s"}
	origin := stream.Origin{ID: "o1", API: strings.TrimPrefix(srv.URL, "http://")}
	for _, tc := range []struct {
		name         string
		status       int
		body         string
		want, hasErr bool
	}{
		{"active", 200, `{"code":0,"streams":[{"app":"live","name":"x","publish":{"active":true}},{"app":"live","name":"s","publish":{"active":true}}]}`, true, false},
		{"inactive", 200, `{"code":0,"streams":[{"app":"live","name":"s","publish":{"active":false}}]}`, false, false},
		{"other app", 200, `{"code":0,"streams":[{"app":"other","name":"s","publish":{"active":true}}]}`, false, false},
		{"none", 200, `{"code":0,"streams":[]}`, false, false},
		{"srs error", 200, `{"code":1000}`, false, true},
		{"http error", 401, `{}`, false, true},
		{"not json", 200, `<html>`, false, true},
	} {
		status, body = tc.status, tc.body
		got, err := live(context.Background(), key, origin)
		if got != tc.want || (err != nil) != tc.hasErr {
			t.Errorf("%s: live %v, err %v; want %v, error %v", tc.name, got, err, tc.want, tc.hasErr)
		}
		if auth != "Basic eDp5" {
			t.Errorf("%s: Authorization %q", tc.name, auth)
		}
	}
	if _, err := live(context.Background(), key, stream.Origin{ID: "o2"}); err == nil {
		t.Error("an origin without an API address read as answered")
	}
	// A stream the mesh has not assigned is not live, and costs no read.
	auth = ""
	status, body = 200, `{"code":0,"streams":[{"app":"live","name":"s","publish":{"active":true}}]}`
	if got, err := liveOnOrigin(newSRTLiveClient(), creds, noAssignments{})(context.Background(), key, origin); got || err != nil || auth != "" {
		t.Errorf("an unassigned stream: live %v, err %v, origin asked %v", got, err, auth != "")
	}
	// An origin that does not answer in time is an error within the
	// caller's context.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer slow.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := live(ctx, key, stream.Origin{ID: "o3", API: strings.TrimPrefix(slow.URL, "http://")}); err == nil {
		t.Error("a silent origin read as answered")
	}
}

type noAssignments struct{}

func (noAssignments) Sources(stream.Key) (stream.Origin, []stream.Origin, bool) {
	return stream.Origin{}, nil, false
}
