package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp"
	"github.com/srs-mesh/srs-mesh/protocols/srt"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Bounds of the SRT server's live check (srt.Config.Live).
const (
	// srtLiveStreams is how many of an origin's streams the check reads;
	// a stream past it reads as not live (the origin then decides).
	srtLiveStreams = 1000
	// srtLiveBody bounds the answer read.
	srtLiveBody = 8 << 20
)

// srsStreams is the part of SRS's /api/v1/streams/ answer the live check
// reads.
type srsStreams struct {
	Code    int `json:"code"`
	Streams []struct {
		App     string `json:"app"`
		Name    string `json:"name"`
		Publish struct {
			Active bool `json:"active"`
		} `json:"publish"`
	} `json:"streams"`
}

// assignments is the mesh's replicated stream table, read locally.
type assignments interface {
	Sources(key stream.Key) (primary stream.Origin, others []stream.Origin, ok bool)
}

// liveOnOrigin answers srt.Config.Live from the origin's SRS HTTP API: the
// stream is live when the origin lists it (app and name) with an active
// publisher. A stream the mesh has no assignment for (a nil assigned
// asks nothing) was never published: not live, and the origin is not
// asked. The origin's API credentials (--origin's auth) are sent as for
// the node's own API calls. An origin without an API, or any failure, is
// an error: the SRT server then relays the publisher to the origin, which
// decides.
func liveOnOrigin(client *http.Client, creds func(originID string) string, assigned assignments) srt.LiveFunc {
	return func(ctx context.Context, key stream.Key, origin stream.Origin) (bool, error) {
		if assigned != nil {
			if _, _, ok := assigned.Sources(key); !ok {
				return false, nil
			}
		}
		if origin.API == "" {
			return false, fmt.Errorf("origin %s has no API address", origin.ID)
		}
		u := url.URL{Scheme: "http", Host: origin.API, Path: "/api/v1/streams/",
			RawQuery: url.Values{"start": {"0"}, "count": {fmt.Sprint(srtLiveStreams)}}.Encode()}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return false, err
		}
		if c := creds(origin.ID); c != "" {
			req.Header.Set("Authorization", c)
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("origin %s API: %s", origin.ID, resp.Status)
		}
		var doc srsStreams
		if err := json.NewDecoder(io.LimitReader(resp.Body, srtLiveBody)).Decode(&doc); err != nil {
			return false, fmt.Errorf("origin %s API: %w", origin.ID, err)
		}
		if doc.Code != 0 {
			return false, fmt.Errorf("origin %s API: code %d", origin.ID, doc.Code)
		}
		for _, s := range doc.Streams {
			if s.App == key.App && s.Name == key.Stream {
				return s.Publish.Active, nil
			}
		}
		return false, nil
	}
}

// newSRTLiveClient is the live check's HTTP client: origins are reached
// directly (a proxy named by the environment would be handed their
// credentials), and no redirect is followed.
func newSRTLiveClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.IdleConnTimeout = 30 * time.Second
	tr.MaxIdleConnsPerHost = 2
	return &http.Client{Transport: tr, Timeout: 2 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// srtStandbys records the SRT server's standby events as the RTMP
// server's (the same metrics and events).
type srtStandbys struct{ m *failoverMetrics }

func (s srtStandbys) Standby(ev srt.StandbyEvent) {
	s.m.Standby(rtmp.StandbyEvent{Key: ev.Key, Peer: ev.Peer, Kind: ev.Kind, Origin: ev.Origin, Gap: ev.Gap})
}

var _ srt.StandbyObserver = srtStandbys{}
