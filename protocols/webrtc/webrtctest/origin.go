// Package webrtctest provides a small SRS-like WebRTC origin built on pion,
// for tests of the WebRTC proxy: it accepts WHIP publishers and WHEP players
// on SRS's URLs, forwards each publisher's RTP to the players of the same
// stream, and carries all media on one UDP port, as SRS does.
package webrtctest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	pionwebrtc "github.com/pion/webrtc/v4"
	"github.com/srs-mesh/srs-mesh/stream"
)

// Options configure an Origin.
type Options struct {
	// FullICE makes the origin a full ICE agent; by default it is ICE-lite,
	// like SRS.
	FullICE bool
	// RefuseBusy makes the origin refuse a publish of a stream that has a
	// publisher as SRS does: it closes the request unanswered.
	RefuseBusy bool
}

// Origin is a running test origin. Its HTTP API serves
//
//	POST   /rtc/v1/whip/?app=&stream=   publish (body application/sdp)
//	POST   /rtc/v1/whep/?app=&stream=   play (also /rtc/v1/whip-play/)
//	DELETE <Location>                   end the session
//
// and answers 201 with a Location of SRS's form:
// /rtc/v1/whip/?action=delete&token=T&app=A&stream=S&session=answerUfrag:offerUfrag.
type Origin struct {
	// API is the HTTP API address and RTC the UDP media address, both
	// "127.0.0.1:port".
	API, RTC string

	pion       *pionwebrtc.API
	mux        *ice.UDPMuxDefault
	refuseBusy bool
	udp        *net.UDPConn
	http       *http.Server
	ln         net.Listener

	mu       sync.Mutex
	closed   bool
	next     int
	sessions map[string]*session // by token
	streams  map[string][]*pionwebrtc.TrackLocalStaticRTP
	wg       sync.WaitGroup

	published atomic.Uint64 // RTP packets received from publishers
}

type session struct {
	pc        *pionwebrtc.PeerConnection
	stream    string
	publisher bool
}

// Start starts an origin on 127.0.0.1 with ephemeral ports.
func Start(opts Options) (*Origin, error) {
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		udp.Close()
		return nil, err
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	mux := ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: udp, Logger: lf.NewLogger("udpmux")})

	se := loopbackSettings(lf)
	se.SetLite(!opts.FullICE)
	se.SetICEUDPMux(mux)
	var me pionwebrtc.MediaEngine
	if err := me.RegisterDefaultCodecs(); err != nil {
		mux.Close()
		ln.Close()
		return nil, err
	}
	o := &Origin{
		refuseBusy: opts.RefuseBusy,
		API:        ln.Addr().String(),
		RTC:        udp.LocalAddr().String(),
		pion:       pionwebrtc.NewAPI(pionwebrtc.WithSettingEngine(se), pionwebrtc.WithMediaEngine(&me)),
		mux:        mux,
		udp:        udp,
		ln:         ln,
		sessions:   make(map[string]*session),
		streams:    make(map[string][]*pionwebrtc.TrackLocalStaticRTP),
	}
	o.http = &http.Server{Handler: http.HandlerFunc(o.serveHTTP), ReadHeaderTimeout: 5 * time.Second}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.http.Serve(ln)
	}()
	return o, nil
}

// StreamOrigin describes the origin as the mesh would route to it.
func (o *Origin) StreamOrigin(id string) stream.Origin {
	return stream.Origin{ID: id, IP: "127.0.0.1", API: o.API, RTC: o.RTC}
}

// Sessions is the number of live sessions (publishers and players).
func (o *Origin) Sessions() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.sessions)
}

// Tracks is the number of tracks published on app/stream.
func (o *Origin) Tracks(app, name string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.streams[app+"/"+name])
}

// PublishedPackets counts RTP packets received from publishers.
func (o *Origin) PublishedPackets() uint64 { return o.published.Load() }

// Close ends every session and stops the origin, waiting for its goroutines.
func (o *Origin) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	var pcs []*pionwebrtc.PeerConnection
	for tok, s := range o.sessions {
		pcs = append(pcs, s.pc)
		delete(o.sessions, tok)
	}
	o.mu.Unlock()
	o.http.Close()
	for _, pc := range pcs {
		pc.Close()
	}
	o.wg.Wait()
	o.mux.Close()
	return o.udp.Close()
}

// goOwned runs f as a goroutine Close waits for, unless the origin is closed.
func (o *Origin) goOwned(f func()) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		f()
	}()
	return true
}

func fail(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"code": status, "message": msg})
	w.Write(b)
}

func (o *Origin) serveHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodDelete:
		if !o.remove(q.Get("token")) {
			fail(w, http.StatusNotFound, "no such session")
			return
		}
		w.WriteHeader(http.StatusOK)
	case r.Method != http.MethodPost:
		fail(w, http.StatusMethodNotAllowed, "method not allowed")
	case r.URL.Path == "/rtc/v1/whip/":
		o.serveOffer(w, r, true)
	case r.URL.Path == "/rtc/v1/whep/" || r.URL.Path == "/rtc/v1/whip-play/":
		o.serveOffer(w, r, false)
	default:
		fail(w, http.StatusNotFound, "no such API")
	}
}

func (o *Origin) serveOffer(w http.ResponseWriter, r *http.Request, publish bool) {
	q := r.URL.Query()
	app, name := q.Get("app"), q.Get("stream")
	if app == "" || name == "" {
		fail(w, http.StatusBadRequest, "app and stream are required")
		return
	}
	key := app + "/" + name
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	o.mu.Lock()
	tracks := append([]*pionwebrtc.TrackLocalStaticRTP(nil), o.streams[key]...)
	busy := false
	for _, s := range o.sessions {
		busy = busy || s.publisher && s.stream == key
	}
	o.mu.Unlock()
	if publish && busy && o.refuseBusy {
		if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
			c.Close()
		}
		return
	}
	if !publish && len(tracks) == 0 {
		fail(w, http.StatusNotFound, "stream not published: "+key)
		return
	}
	pc, err := o.pion.NewPeerConnection(pionwebrtc.Configuration{})
	if err != nil {
		fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	o.mu.Lock()
	o.next++
	token := strconv.Itoa(o.next)
	o.mu.Unlock()
	pc.OnConnectionStateChange(func(st pionwebrtc.PeerConnectionState) {
		if st == pionwebrtc.PeerConnectionStateFailed {
			o.goOwned(func() { o.remove(token) })
		}
	})
	if publish {
		pc.OnTrack(func(remote *pionwebrtc.TrackRemote, _ *pionwebrtc.RTPReceiver) {
			local, err := pionwebrtc.NewTrackLocalStaticRTP(remote.Codec().RTPCodecCapability, remote.ID(), remote.StreamID())
			if err != nil {
				return
			}
			o.goOwned(func() {
				o.mu.Lock()
				o.streams[key] = append(o.streams[key], local)
				o.mu.Unlock()
				for {
					p, _, err := remote.ReadRTP()
					if err != nil {
						return
					}
					o.published.Add(1)
					local.WriteRTP(p)
				}
			})
		})
	}
	answer, err := o.negotiate(pc, string(body), tracks)
	if err != nil {
		pc.Close()
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		pc.Close()
		fail(w, http.StatusServiceUnavailable, "closed")
		return
	}
	o.sessions[token] = &session{pc: pc, stream: key, publisher: publish}
	o.mu.Unlock()
	ufrag := func(d *pionwebrtc.SessionDescription) string {
		if sd, err := d.Unmarshal(); err == nil {
			for _, m := range sd.MediaDescriptions {
				if v, ok := m.Attribute("ice-ufrag"); ok {
					return v
				}
			}
			if v, ok := sd.Attribute("ice-ufrag"); ok {
				return v
			}
		}
		return ""
	}
	offer := pionwebrtc.SessionDescription{Type: pionwebrtc.SDPTypeOffer, SDP: string(body)}
	w.Header().Set("Location", fmt.Sprintf("/rtc/v1/whip/?action=delete&token=%s&app=%s&stream=%s&session=%s:%s",
		token, app, name, ufrag(answer), ufrag(&offer)))
	w.Header().Set("Content-Type", "application/sdp")
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, answer.SDP)
}

// negotiate applies the offer, adds the stream's tracks for a player, and
// returns the complete answer (candidates gathered).
func (o *Origin) negotiate(pc *pionwebrtc.PeerConnection, sdp string, tracks []*pionwebrtc.TrackLocalStaticRTP) (*pionwebrtc.SessionDescription, error) {
	if err := pc.SetRemoteDescription(pionwebrtc.SessionDescription{Type: pionwebrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return nil, err
	}
	for _, t := range tracks {
		sender, err := pc.AddTrack(t)
		if err != nil {
			return nil, err
		}
		o.goOwned(func() {
			buf := make([]byte, 1500)
			for {
				if _, _, err := sender.Read(buf); err != nil {
					return
				}
			}
		})
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return nil, err
	}
	gathered := pionwebrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	select {
	case <-gathered:
	case <-ctx.Done():
		return nil, errors.New("ICE gathering timed out")
	}
	return pc.LocalDescription(), nil
}

// remove closes a session; a publisher's tracks leave the stream.
func (o *Origin) remove(token string) bool {
	o.mu.Lock()
	s, ok := o.sessions[token]
	if ok {
		delete(o.sessions, token)
		if s.publisher {
			delete(o.streams, s.stream)
		}
	}
	o.mu.Unlock()
	if ok {
		s.pc.Close()
	}
	return ok
}
