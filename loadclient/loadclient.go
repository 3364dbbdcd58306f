// Package loadclient plays one live stream with many players from one
// process, to size a node: RTMP, HTTP-FLV, HLS and WebRTC (WHEP) players
// that parse what they receive (RTMP messages with protocols/rtmp/chunk,
// FLV tags with protocols/fanout's Reader, HLS playlists and the segments
// they list, RTP packets with pion), so that a stalled or broken player is
// counted, not hidden.
//
// Run owns every goroutine it starts: one per player, plus the ramp, all
// ended and waited for before it returns. Players start at a bounded rate
// (Config.Rate), each set-up is bounded (Config.ConnectTimeout) and so is
// each wait for data (Config.IdleTimeout). A player that fails is not
// restarted: it is counted, with why.
//
// What a player measures costs no timer and no lock: it adds to its own
// counters as media arrives, and a stall is a gap between two frames (or,
// for HLS, the time a player would have waited with nothing left to play)
// longer than Config.StallGap. A gap still open when the run ends counts.
package loadclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Protocols of a player, from its URL.
const (
	ProtoRTMP = "rtmp"
	ProtoFLV  = "http-flv"
	ProtoHLS  = "hls"
	ProtoWHEP = "whep"
)

// Config says what to play and how hard. Zero values take the defaults.
type Config struct {
	// URL is the stream: rtmp://host[:port]/app/stream[?query],
	// http(s)://host/app/stream.flv[?query], .../stream.m3u8, or a WHEP
	// endpoint (a path with "whep" in it, such as SRS's
	// /rtc/v1/whep/?app=live&stream=livestream).
	URL string
	// Players is how many players to run. It must be positive.
	Players int
	// Rate is how many players start per second. Default DefaultRate.
	Rate float64
	// ConnectTimeout bounds a player's set-up: the connection, the
	// handshake and the play, up to its first byte of media. Default
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// IdleTimeout ends a player that receives nothing for so long.
	// Default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// StallGap is the gap between two frames (for HLS, the wait with
	// nothing buffered) that counts as a stall. Default DefaultStallGap.
	StallGap time.Duration
	// Duration is how long the run lasts once the last player started;
	// zero: until ctx ends.
	Duration time.Duration
	// Log, when not nil, gets one line per failed player (the first
	// ten) and the run's progress.
	Log *slog.Logger
	// Progress, when not nil, is called about every ProgressEvery with
	// the run so far, from Run's goroutine.
	Progress      func(Summary)
	ProgressEvery time.Duration
}

// Defaults for Config.
const (
	DefaultRate           = 200
	DefaultConnectTimeout = 10 * time.Second
	DefaultIdleTimeout    = 10 * time.Second
	DefaultStallGap       = time.Second
	DefaultProgressEvery  = 5 * time.Second
	// MaxPlayers bounds Config.Players: a player costs at least one
	// file descriptor and one goroutine.
	MaxPlayers = 100000
)

// Errors.
var (
	ErrBadURL     = errors.New("loadclient: unsupported URL (want rtmp://, or http(s):// ending .flv or .m3u8, or a WHEP endpoint with whep in its path)")
	ErrBadPlayers = errors.New("loadclient: players must be 1..100000")
	ErrIdle       = errors.New("loadclient: no data within the idle timeout")
	ErrBadMedia   = errors.New("loadclient: malformed media")
)

// Protocol returns the protocol of a stream URL, or ErrBadURL.
func Protocol(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadURL, err)
	}
	switch {
	case u.Scheme == "rtmp":
		return ProtoRTMP, nil
	case (u.Scheme == "http" || u.Scheme == "https") && strings.HasSuffix(u.Path, ".flv"):
		return ProtoFLV, nil
	case (u.Scheme == "http" || u.Scheme == "https") && strings.HasSuffix(u.Path, ".m3u8"):
		return ProtoHLS, nil
	case (u.Scheme == "http" || u.Scheme == "https") && strings.Contains(strings.ToLower(u.Path), "whep"):
		return ProtoWHEP, nil
	}
	return "", fmt.Errorf("%w: %s", ErrBadURL, rawURL)
}

func (c *Config) defaults() error {
	if c.Players <= 0 || c.Players > MaxPlayers {
		return ErrBadPlayers
	}
	if _, err := Protocol(c.URL); err != nil {
		return err
	}
	if c.Rate <= 0 {
		c.Rate = DefaultRate
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.StallGap <= 0 {
		c.StallGap = DefaultStallGap
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = DefaultProgressEvery
	}
	return nil
}

// PlayerStats is what one player saw.
type PlayerStats struct {
	ID int `json:"id"`
	// Connected: the player received media.
	Connected bool  `json:"connected"`
	Bytes     int64 `json:"bytes"`
	// Frames are video frames (audio frames for a stream without video;
	// segments for HLS, whose frames are not counted; for WHEP, video
	// packets that end a frame, the RTP marker bit).
	Frames int64 `json:"frames"`
	// Stalls are the gaps longer than Config.StallGap; Longest is the
	// longest gap, an open one included.
	Stalls  int64         `json:"stalls"`
	Longest time.Duration `json:"longest_gap_ns"`
	// FirstMedia is the time from the player's start to its first media.
	FirstMedia time.Duration `json:"first_media_ns,omitempty"`
	Err        string        `json:"error,omitempty"`
}

// player is one player's counters: written by its goroutine, read by the
// reports.
type player struct {
	id      int
	start   time.Time
	bytes   atomic.Int64
	frames  atomic.Int64
	stalls  atomic.Int64
	longest atomic.Int64 // nanoseconds
	last    atomic.Int64 // unix nanoseconds of the last frame (HLS: when what it fetched is played out), 0 before
	first   atomic.Int64 // nanoseconds from start to the first media, 0 before
	err     atomic.Pointer[string]
	gap     time.Duration // Config.StallGap
}

// count adds n bytes the player received.
func (p *player) count(n int) { p.bytes.Add(int64(n)) }

// media records the first media's arrival.
func (p *player) media(now time.Time) {
	if p.first.Load() == 0 {
		p.first.Store(max(1, int64(now.Sub(p.start))))
	}
}

// frame records one frame arriving at now.
func (p *player) frame(now time.Time) {
	p.media(now)
	if last := p.last.Load(); last != 0 {
		p.gapOf(time.Duration(now.UnixNano() - last))
	}
	p.last.Store(now.UnixNano())
	p.frames.Add(1)
}

// gapOf records a gap between frames, or a wait with nothing to play.
func (p *player) gapOf(d time.Duration) {
	if d > p.gap {
		p.stalls.Add(1)
	}
	if int64(d) > p.longest.Load() {
		p.longest.Store(int64(d))
	}
}

func (p *player) fail(err error) {
	s := err.Error()
	p.err.Store(&s)
}

// stats returns what p saw so far, counting a gap still open at now.
func (p *player) stats(now time.Time) PlayerStats {
	st := PlayerStats{ID: p.id, Bytes: p.bytes.Load(), Frames: p.frames.Load(), Stalls: p.stalls.Load(),
		Longest: time.Duration(p.longest.Load()), FirstMedia: time.Duration(p.first.Load())}
	st.Connected = st.FirstMedia > 0
	if e := p.err.Load(); e != nil {
		st.Err = *e
	}
	if last := p.last.Load(); last != 0 && st.Err == "" {
		open := time.Duration(now.UnixNano() - last)
		if open > p.gap {
			st.Stalls++
		}
		st.Longest = max(st.Longest, open)
	}
	return st
}

// Summary is a run so far, or the whole of it.
type Summary struct {
	URL      string `json:"url"`
	Protocol string `json:"protocol"`
	// Players are those requested; Started, those started so far.
	Players   int `json:"players"`
	Started   int `json:"started"`
	Connected int `json:"connected"`
	// Failed are the players that ended with an error; Errors, the
	// distinct errors and how many players each ended.
	Failed int            `json:"failed"`
	Errors map[string]int `json:"errors,omitempty"`
	// Elapsed is the time since the first player started.
	Elapsed time.Duration `json:"elapsed_ns"`
	Bytes   int64         `json:"bytes"`
	Mbps    float64       `json:"mbit_per_s"`
	Frames  int64         `json:"frames"`
	// FramesPerSecond is frames over Elapsed, for all players together.
	FramesPerSecond float64 `json:"frames_per_s"`
	// Stalled are the players with at least one stall; Stalls, the
	// stalls of all; LongestStall, the longest gap any player saw.
	Stalled      int           `json:"stalled_players"`
	Stalls       int64         `json:"stalls"`
	LongestStall time.Duration `json:"longest_stall_ns"`
	// FirstMediaP50 and FirstMediaMax are the times from a player's
	// start to its first media, over the connected players.
	FirstMediaP50 time.Duration `json:"first_media_p50_ns"`
	FirstMediaMax time.Duration `json:"first_media_max_ns"`
	// PerPlayer is every player's figures (Run's final summary only).
	PerPlayer []PlayerStats `json:"per_player,omitempty"`
}

// String is the summary as a few lines of text.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d players (%d started), %d connected, %d failed, %v\n", s.Protocol, s.URL, s.Players, s.Started,
		s.Connected, s.Failed, s.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(&b, "  received %.1f MB (%.1f Mbit/s), %d frames (%.0f frames/s)\n", float64(s.Bytes)/1e6, s.Mbps, s.Frames, s.FramesPerSecond)
	fmt.Fprintf(&b, "  stalled players %d (%d stalls), longest stall %v; first media p50 %v, max %v\n", s.Stalled, s.Stalls,
		s.LongestStall.Round(time.Millisecond), s.FirstMediaP50.Round(time.Millisecond), s.FirstMediaMax.Round(time.Millisecond))
	errs := make([]string, 0, len(s.Errors))
	for e := range s.Errors {
		errs = append(errs, e)
	}
	sort.Slice(errs, func(i, j int) bool { return s.Errors[errs[i]] > s.Errors[errs[j]] })
	for i, e := range errs {
		if i == 5 {
			fmt.Fprintf(&b, "  ... %d more distinct errors\n", len(errs)-5)
			break
		}
		fmt.Fprintf(&b, "  %d players: %s\n", s.Errors[e], e)
	}
	return b.String()
}

// maxErrorKinds bounds Summary.Errors.
const maxErrorKinds = 20

// summarize builds a summary of players at now.
func summarize(cfg *Config, proto string, players []*player, begin, now time.Time, perPlayer bool) Summary {
	s := Summary{URL: cfg.URL, Protocol: proto, Players: cfg.Players, Started: len(players), Elapsed: now.Sub(begin)}
	var firsts []time.Duration
	for _, p := range players {
		st := p.stats(now)
		s.Bytes += st.Bytes
		s.Frames += st.Frames
		s.Stalls += st.Stalls
		s.LongestStall = max(s.LongestStall, st.Longest)
		if st.Stalls > 0 {
			s.Stalled++
		}
		if st.Connected {
			s.Connected++
			firsts = append(firsts, st.FirstMedia)
		}
		if st.Err != "" {
			s.Failed++
			if s.Errors == nil {
				s.Errors = map[string]int{}
			}
			if _, ok := s.Errors[st.Err]; ok || len(s.Errors) < maxErrorKinds {
				s.Errors[st.Err]++
			} else {
				s.Errors["(other errors)"]++
			}
		}
		if perPlayer {
			s.PerPlayer = append(s.PerPlayer, st)
		}
	}
	if secs := s.Elapsed.Seconds(); secs > 0 {
		s.Mbps = float64(s.Bytes) * 8 / 1e6 / secs
		s.FramesPerSecond = float64(s.Frames) / secs
	}
	if len(firsts) > 0 {
		slices.Sort(firsts)
		s.FirstMediaP50, s.FirstMediaMax = firsts[len(firsts)/2], firsts[len(firsts)-1]
	}
	return s
}

// playFunc plays cfg.URL as p until ctx ends (then it returns nil) or the
// play fails.
type playFunc func(ctx context.Context, cfg *Config, p *player) error

// Run plays cfg.URL with cfg.Players players until cfg.Duration has passed
// since the last one started, or ctx ends, and returns what they saw. It
// returns an error only for a bad Config; players that fail are counted.
// Every goroutine it starts has ended when it returns.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	if err := cfg.defaults(); err != nil {
		return Summary{}, err
	}
	proto, _ := Protocol(cfg.URL)
	var play playFunc
	var closeIdle func()
	switch proto {
	case ProtoRTMP:
		play = playRTMP
	case ProtoWHEP:
		api, err := newWebRTC()
		if err != nil {
			return Summary{}, err
		}
		tr := newTransport(&cfg)
		closeIdle = tr.CloseIdleConnections
		client := &http.Client{Transport: tr}
		play = func(ctx context.Context, cfg *Config, p *player) error { return playWHEP(ctx, api, client, cfg, p) }
	case ProtoFLV, ProtoHLS:
		tr := newTransport(&cfg)
		closeIdle = tr.CloseIdleConnections
		client := &http.Client{Transport: tr}
		if proto == ProtoFLV {
			play = func(ctx context.Context, cfg *Config, p *player) error { return playFLV(ctx, client, cfg, p) }
		} else {
			play = func(ctx context.Context, cfg *Config, p *player) error { return playHLS(ctx, client, cfg, p) }
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		mu      sync.Mutex
		players = make([]*player, 0, cfg.Players)
		wg      sync.WaitGroup
		logged  atomic.Int32
	)
	snapshot := func() []*player {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(players)
	}
	begin := time.Now()
	rampDone := make(chan struct{})
	wg.Add(1)
	go func() { // the ramp
		defer wg.Done()
		defer close(rampDone)
		every := time.Duration(float64(time.Second) / cfg.Rate)
		for i := range cfg.Players {
			if wait := time.Until(begin.Add(time.Duration(i) * every)); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			} else if ctx.Err() != nil {
				return
			}
			p := &player{id: i, start: time.Now(), gap: cfg.StallGap}
			mu.Lock()
			players = append(players, p)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := play(ctx, &cfg, p); err != nil && ctx.Err() == nil {
					p.fail(err)
					if cfg.Log != nil && logged.Add(1) <= 10 {
						cfg.Log.Warn("player failed", "player", p.id, "err", err)
					}
				}
			}()
		}
	}()

	progress := time.NewTicker(cfg.ProgressEvery)
	defer progress.Stop()
	var end <-chan time.Time
	ramp := rampDone
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-ramp:
			ramp = nil
			if cfg.Duration > 0 {
				t := time.NewTimer(cfg.Duration)
				defer t.Stop()
				end = t.C
			}
		case <-end:
			done = true
		case now := <-progress.C:
			if cfg.Progress != nil {
				cfg.Progress(summarize(&cfg, proto, snapshot(), begin, now, false))
			}
		}
	}
	final := summarize(&cfg, proto, snapshot(), begin, time.Now(), true)
	cancel()
	wg.Wait()
	if closeIdle != nil {
		closeIdle()
	}
	return final, nil
}
