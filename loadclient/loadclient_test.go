package loadclient

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/fanout"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/amf0"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/handshake"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// Media of the test servers: an AVC sequence header, then frames at 25/s.
var (
	avcSeq   = []byte{0x17, 0, 0, 0, 0, 1, 2, 3}
	avcKey   = []byte{0x17, 1, 0, 0, 0, 9, 9, 9, 9}
	avcInter = []byte{0x27, 1, 0, 0, 0, 8, 8}
)

const frameEvery = 40 * time.Millisecond

// frameAt is the i-th frame of the test media (a keyframe every 25).
func frameAt(i int) []byte {
	if i%25 == 0 {
		return avcKey
	}
	return avcInter
}

// serveFLV serves an endless FLV stream; pause, when not nil, is asked
// before every frame for how long to hold it (a stall).
func serveFLV(pause func(i int) time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "video/x-flv")
		w.Write(fanout.Header(false, true))
		w.Write(fanout.NewTag(fanout.TagVideo, 0, avcSeq).Data)
		rc := http.NewResponseController(w)
		for i := 0; ; i++ {
			d := frameEvery
			if pause != nil {
				d += pause(i)
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(d):
			}
			if _, err := w.Write(fanout.NewTag(fanout.TagVideo, uint32(i*40), frameAt(i)).Data); err != nil {
				return
			}
			rc.Flush()
		}
	}
}

func TestFLVPlayers(t *testing.T) {
	testkit.CheckGoroutines(t)
	srv := httptest.NewServer(serveFLV(nil))
	defer srv.Close()
	s, err := Run(context.Background(), Config{URL: srv.URL + "/live/s.flv", Players: 20, Rate: 1000, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if s.Connected != 20 || s.Failed != 0 || s.Protocol != ProtoFLV {
		t.Fatalf("%+v", s)
	}
	for _, p := range s.PerPlayer {
		if p.Frames < 10 || p.Bytes < 100 || p.Stalls != 0 {
			t.Errorf("player %+v", p)
		}
	}
	if s.Stalled != 0 || s.FramesPerSecond < 100 {
		t.Errorf("%s", s)
	}
}

// A player whose frames stop for longer than the stall gap is counted as
// stalled, with the gap; one that gets nothing is failed by the idle
// timeout.
func TestFLVStallsAndIdle(t *testing.T) {
	testkit.CheckGoroutines(t)
	srv := httptest.NewServer(serveFLV(func(i int) time.Duration {
		if i == 5 {
			return 400 * time.Millisecond
		}
		return 0
	}))
	defer srv.Close()
	s, err := Run(context.Background(), Config{URL: srv.URL + "/s.flv", Players: 3, StallGap: 200 * time.Millisecond, Duration: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if s.Stalled != 3 || s.LongestStall < 400*time.Millisecond || s.Failed != 0 {
		t.Fatalf("%s", s)
	}

	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(fanout.Header(false, true))
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	}))
	defer silent.Close()
	s, err = Run(context.Background(), Config{URL: silent.URL + "/s.flv", Players: 2, IdleTimeout: 300 * time.Millisecond, Duration: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if s.Failed != 2 || s.Errors[ErrIdle.Error()] != 2 {
		t.Fatalf("%s", s)
	}
}

// Broken media and refusals are failures, with why.
func TestFLVFailures(t *testing.T) {
	testkit.CheckGoroutines(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/notflv.flv":
			w.Write([]byte("<html>not a stream</html>"))
		case "/huge.flv":
			w.Write(fanout.Header(false, true))
			w.Write([]byte{9, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0}) // a 16 MiB tag
		default:
			http.Error(w, "no", http.StatusForbidden)
		}
	}))
	defer srv.Close()
	for path, want := range map[string]string{"/notflv.flv": ErrBadMedia.Error(), "/huge.flv": ErrBadMedia.Error(), "/x.flv": "403"} {
		s, err := Run(context.Background(), Config{URL: srv.URL + path, Players: 2, Duration: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if s.Failed != 2 || s.Connected != 0 {
			t.Fatalf("%s: %s", path, s)
		}
		for e := range s.Errors {
			if !strings.Contains(e, want) {
				t.Errorf("%s: error %q, want %q in it", path, e, want)
			}
		}
	}
}

// rtmpServer is a minimal RTMP server: it answers connect, createStream
// and play, then sends the test media until the client goes. A play of
// "refused" gets an error status.
func rtmpServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				serveRTMP(nc)
			}()
		}
	}()
	return ln.Addr().String()
}

func serveRTMP(nc net.Conn) error {
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := handshake.Server(nc, 0); err != nil {
		return err
	}
	r := chunk.NewReader(bufio.NewReader(nc), 1<<20, 4096)
	w := chunk.NewWriter(nc, 4096)
	send := func(csid uint32, typ uint8, sid, ts uint32, payload []byte) error {
		if err := w.WriteMessage(&chunk.Message{CSID: csid, Type: typ, StreamID: sid, Timestamp: ts, Payload: payload}); err != nil {
			return err
		}
		return w.Flush()
	}
	cmd := func(sid uint32, vals ...any) error {
		b, _ := amf0.AppendAll(nil, vals...)
		return send(3, chunk.TypeCommandAMF0, sid, 0, b)
	}
	if err := w.WriteControl(chunk.TypeWindowAckSize, 4096); err != nil {
		return err
	}
	for {
		m, err := r.ReadMessage()
		if err != nil {
			return err
		}
		if m.Type != chunk.TypeCommandAMF0 {
			continue
		}
		vals, err := amf0.DecodeAll(m.Payload)
		if err != nil || len(vals) < 2 {
			return errors.New("bad command")
		}
		switch vals[0] {
		case "connect":
			err = cmd(0, "_result", vals[1], nil, amf0.Object{{Key: "code", Value: "NetConnection.Connect.Success"}})
		case "createStream":
			err = cmd(0, "_result", vals[1], nil, 1.0)
		case "play":
			if name, _ := vals[3].(string); name == "refused" {
				return cmd(1, "onStatus", 0.0, nil, amf0.Object{{Key: "level", Value: "error"}, {Key: "code", Value: "NetStream.Play.StreamNotFound"}})
			}
			if err := cmd(1, "onStatus", 0.0, nil, amf0.Object{{Key: "level", Value: "status"}, {Key: "code", Value: "NetStream.Play.Start"}}); err != nil {
				return err
			}
			go func() { // the client's acknowledgements, until it goes
				for {
					if _, err := r.ReadMessage(); err != nil {
						return
					}
				}
			}()
			if err := send(6, chunk.TypeVideo, 1, 0, avcSeq); err != nil {
				return err
			}
			nc.SetDeadline(time.Time{})
			for i := 0; ; i++ {
				time.Sleep(frameEvery) // the media's pace, not a wait for a condition
				nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if err := send(6, chunk.TypeVideo, 1, uint32(i*40), frameAt(i)); err != nil {
					return err
				}
			}
		}
		if err != nil {
			return err
		}
	}
}

func TestRTMPPlayers(t *testing.T) {
	testkit.CheckGoroutines(t)
	addr := rtmpServer(t)
	s, err := Run(context.Background(), Config{URL: "rtmp://" + addr + "/live/s?token=1", Players: 20, Rate: 1000, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if s.Connected != 20 || s.Failed != 0 || s.Protocol != ProtoRTMP || s.Stalled != 0 {
		t.Fatalf("%s", s)
	}
	for _, p := range s.PerPlayer {
		if p.Frames < 10 {
			t.Errorf("player %+v", p)
		}
	}
	s, err = Run(context.Background(), Config{URL: "rtmp://" + addr + "/live/refused", Players: 2, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if s.Failed != 2 || s.Errors["refused: NetStream.Play.StreamNotFound"] != 2 {
		t.Fatalf("%s", s)
	}
}

// hlsServer serves a live HLS stream whose segments (duration d, TS
// packets) come every d; a master playlist points at it.
func hlsServer(d time.Duration) *httptest.Server {
	begin := time.Now()
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/live/master.m3u8":
			fmt.Fprint(w, "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nvariant/s.m3u8?ctx=1\n")
		case strings.HasSuffix(r.URL.Path, ".m3u8"):
			last := int(time.Since(begin)/d) + 5
			fmt.Fprintf(w, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:%d\n#EXT-X-MEDIA-SEQUENCE:%d\n", int(d.Seconds()+0.999), last-4)
			for i := last - 4; i <= last; i++ {
				fmt.Fprintf(w, "#EXTINF:%.3f,\nseg-%d.ts\n", d.Seconds(), i)
			}
		case strings.HasSuffix(r.URL.Path, ".ts"):
			pkt := make([]byte, tsPacket)
			pkt[0] = 0x47
			for range 10 {
				w.Write(pkt)
			}
		}
	}))
}

func TestHLSPlayers(t *testing.T) {
	testkit.CheckGoroutines(t)
	srv := hlsServer(time.Second)
	defer srv.Close()
	s, err := Run(context.Background(), Config{URL: srv.URL + "/live/master.m3u8", Players: 10, Rate: 1000, Duration: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if s.Connected != 10 || s.Failed != 0 || s.Protocol != ProtoHLS || s.Stalled != 0 {
		t.Fatalf("%s", s)
	}
	for _, p := range s.PerPlayer {
		if p.Frames < liveStartSegments || p.Bytes < int64(liveStartSegments*10*tsPacket) {
			t.Errorf("player %+v", p)
		}
	}
}

func TestParsePlaylist(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ok       bool
		segments int
		variant  string
	}{
		{"media", "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2.0,\na.ts\n#EXTINF:1.5,\nb.ts\n", true, 2, ""},
		{"master", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n", true, 0, "v.m3u8"},
		{"not a playlist", "<html>", false, 0, ""},
		{"empty", "", false, 0, ""},
		{"no target", "#EXTM3U\n#EXTINF:2,\na.ts\n", false, 0, ""},
		{"bad target", "#EXTM3U\n#EXT-X-TARGETDURATION:x\n", false, 0, ""},
		{"bad extinf", "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:-1,\na.ts\n", false, 0, ""},
		{"bad sequence", "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:-1\n", false, 0, ""},
		{"too many", "#EXTM3U\n#EXT-X-TARGETDURATION:2\n" + strings.Repeat("a.ts\n", maxPlaylistSegments+1), false, 0, ""},
	} {
		pl, err := parsePlaylist([]byte(tc.in))
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadMedia)) {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if tc.ok && (len(pl.segments) != tc.segments || pl.variant != tc.variant) {
			t.Errorf("%s: %+v", tc.name, pl)
		}
	}
}

func FuzzParsePlaylist(f *testing.F) {
	f.Add([]byte("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2.0,\na.ts\n#EXT-X-ENDLIST\n"))
	f.Add([]byte("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n"))
	f.Add([]byte("#EXTM3U\n#EXTINF:,\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pl, err := parsePlaylist(b)
		if err == nil && pl.variant == "" && (pl.target <= 0 || len(pl.segments) > maxPlaylistSegments) {
			t.Fatalf("accepted %+v", pl)
		}
	})
}

func TestConfig(t *testing.T) {
	for _, c := range []Config{
		{URL: "rtmp://h/a/s", Players: 0},
		{URL: "rtmp://h/a/s", Players: MaxPlayers + 1},
		{URL: "http://h/a/s.mp4", Players: 1},
		{URL: "srt://h:1/", Players: 1},
	} {
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	if _, _, _, _, err := rtmpTarget("rtmp://h/app"); err == nil {
		t.Error("rtmp://h/app: no error")
	}
	addr, tc, app, name, err := rtmpTarget("rtmp://h/app/s?k=v")
	if err != nil || addr != "h:1935" || tc != "rtmp://h/app" || app != "app" || name != "s?k=v" {
		t.Errorf("%s %s %s %s %v", addr, tc, app, name, err)
	}
}

// A playlist that is not there yet is asked again until the set-up's
// deadline, as players do; one that never comes fails the player.
func TestHLSPlaylistRetried(t *testing.T) {
	testkit.CheckGoroutines(t)
	live := hlsServer(time.Second)
	defer live.Close()
	begin := time.Now()
	late := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".m3u8") && time.Since(begin) < 1500*time.Millisecond {
			http.NotFound(w, r)
			return
		}
		http.Redirect(w, r, live.URL+r.URL.Path, http.StatusFound)
	}))
	defer late.Close()
	s, err := Run(context.Background(), Config{URL: late.URL + "/live/s.m3u8", Players: 2, ConnectTimeout: 4 * time.Second, Duration: 2500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if s.Connected != 2 || s.Failed != 0 {
		t.Fatalf("%s", s)
	}
	never := httptest.NewServer(http.NotFoundHandler())
	defer never.Close()
	s, err = Run(context.Background(), Config{URL: never.URL + "/live/s.m3u8", Players: 2, ConnectTimeout: 1500 * time.Millisecond, Duration: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if s.Failed != 2 || s.Errors["playlist: HTTP 404 Not Found"] != 2 {
		t.Fatalf("%s", s)
	}
}
