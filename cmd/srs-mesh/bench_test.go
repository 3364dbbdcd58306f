package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/fanout"
)

func TestBenchPlay(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(fanout.Header(false, true))
		for i := 0; r.Context().Err() == nil; i++ {
			if _, err := w.Write(fanout.NewTag(fanout.TagVideo, uint32(i*40), []byte{0x27, 1, 0, 0, 0, 1}).Data); err != nil {
				return
			}
			http.NewResponseController(w).Flush()
			time.Sleep(40 * time.Millisecond) // the media's pace
		}
	}))
	defer srv.Close()
	out, err := runRoot(t, "bench", "play", srv.URL+"/live/s.flv", "-n", "3", "--duration", "500ms", "--per-player")
	if err != nil || !strings.Contains(out, "3 players (3 started), 3 connected, 0 failed") || !strings.Contains(out, "player\tconnected") {
		t.Errorf("bench play: %v\n%s", err, out)
	}
	if out, err := runRoot(t, "bench", "play", "ftp://x/y", "-n", "1"); err == nil {
		t.Errorf("an ftp URL: no error\n%s", out)
	}
	// Nothing to play: no player received media, which the exit status says.
	if out, err := runRoot(t, "bench", "play", "rtmp://127.0.0.1:1/live/s", "-n", "1", "--duration", "100ms"); err == nil {
		t.Errorf("no server: no error\n%s", out)
	}
}
