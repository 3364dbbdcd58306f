package loadclient

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Bounds of an HLS player.
const (
	// maxPlaylist bounds a playlist's bytes.
	maxPlaylist = 1 << 20
	// maxPlaylistSegments bounds the segments of a playlist a player keeps.
	maxPlaylistSegments = 4096
	// liveStartSegments is how far from a live playlist's end a player
	// starts, in segments, as players do (hls.js starts three target
	// durations back).
	liveStartSegments = 3
	// tsPacket is an MPEG-TS packet's size.
	tsPacket = 188
)

// playlist is what a player reads of an HLS playlist.
type playlist struct {
	// variant is the first variant's URI of a master playlist, else "".
	variant  string
	target   time.Duration
	sequence uint64 // of the first segment
	segments []segment
	ended    bool
}

type segment struct {
	uri string
	dur time.Duration
}

// parsePlaylist reads an HLS playlist (RFC 8216): a master playlist's
// first variant, or a media playlist's target duration, media sequence and
// segments. A playlist with no #EXTM3U, or a media playlist with no target
// duration, is bad media.
func parsePlaylist(b []byte) (playlist, error) {
	var pl playlist
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 0, 4096), maxPlaylist)
	first := true
	var dur time.Duration
	variant := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if first {
			if line != "#EXTM3U" {
				return pl, fmt.Errorf("%w: not an HLS playlist", ErrBadMedia)
			}
			first = false
			continue
		}
		switch {
		case line == "":
		case strings.HasPrefix(line, "#EXT-X-STREAM-INF"):
			variant = true
		case strings.HasPrefix(line, "#EXT-X-TARGETDURATION:"):
			v, err := strconv.ParseFloat(strings.TrimPrefix(line, "#EXT-X-TARGETDURATION:"), 64)
			if err != nil || v <= 0 || v > 3600 {
				return pl, fmt.Errorf("%w: %q", ErrBadMedia, line)
			}
			pl.target = time.Duration(v * float64(time.Second))
		case strings.HasPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"):
			v, err := strconv.ParseUint(strings.TrimPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"), 10, 64)
			if err != nil {
				return pl, fmt.Errorf("%w: %q", ErrBadMedia, line)
			}
			pl.sequence = v
		case strings.HasPrefix(line, "#EXTINF:"):
			v, _, _ := strings.Cut(strings.TrimPrefix(line, "#EXTINF:"), ",")
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || f > 3600 {
				return pl, fmt.Errorf("%w: %q", ErrBadMedia, line)
			}
			dur = time.Duration(f * float64(time.Second))
		case line == "#EXT-X-ENDLIST":
			pl.ended = true
		case strings.HasPrefix(line, "#"):
		default:
			if variant {
				pl.variant = line
				return pl, nil
			}
			if len(pl.segments) == maxPlaylistSegments {
				return pl, fmt.Errorf("%w: more than %d segments", ErrBadMedia, maxPlaylistSegments)
			}
			pl.segments = append(pl.segments, segment{uri: line, dur: dur})
			dur = 0
		}
	}
	if err := sc.Err(); err != nil {
		return pl, fmt.Errorf("%w: %w", ErrBadMedia, err)
	}
	if first {
		return pl, fmt.Errorf("%w: empty playlist", ErrBadMedia)
	}
	if pl.target == 0 {
		return pl, fmt.Errorf("%w: a media playlist without #EXT-X-TARGETDURATION", ErrBadMedia)
	}
	return pl, nil
}

// playHLS plays an HLS URL as a live player does: it reloads the media
// playlist (following a master playlist's first variant), fetches each new
// segment once, in order, starting liveStartSegments from the end, and
// plays them out in its head: a segment that arrives after the ones before
// it were played out is a stall of the wait. Frames are segments here.
func playHLS(ctx context.Context, client *http.Client, cfg *Config, p *player) error {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return err
	}
	var (
		next     uint64 // the sequence number of the next segment to fetch
		started  bool
		buffered time.Time // when what the player fetched is played out
		// A playlist that fails is asked again every second, as players
		// do, until the set-up's deadline (before the first segment) or
		// the idle timeout since the last playlist has passed.
		lastOK = time.Now().Add(cfg.ConnectTimeout - cfg.IdleTimeout)
	)
	for {
		b, err := get(ctx, client, u.String(), p, false)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if time.Since(lastOK) > cfg.IdleTimeout {
				return hlsErr(ctx, "playlist", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		lastOK = time.Now()
		pl, err := parsePlaylist(b)
		if err != nil {
			return err
		}
		if pl.variant != "" {
			if u, err = u.Parse(pl.variant); err != nil {
				return fmt.Errorf("%w: variant %q", ErrBadMedia, pl.variant)
			}
			continue
		}
		if !started {
			next = pl.sequence + uint64(max(0, len(pl.segments)-liveStartSegments))
			started = len(pl.segments) > 0
		}
		fetched := false
		for i, s := range pl.segments {
			seq := pl.sequence + uint64(i)
			if seq < next {
				continue
			}
			su, err := u.Parse(s.uri)
			if err != nil {
				return fmt.Errorf("%w: segment %q", ErrBadMedia, s.uri)
			}
			if _, err := get(ctx, client, su.String(), p, strings.HasSuffix(su.Path, ".ts")); err != nil {
				return hlsErr(ctx, "segment", err)
			}
			now := time.Now()
			p.media(now)
			if buffered.IsZero() || now.After(buffered) {
				if !buffered.IsZero() {
					p.gapOf(now.Sub(buffered))
				}
				buffered = now
			}
			buffered = buffered.Add(s.dur)
			p.last.Store(buffered.UnixNano()) // an open gap runs from there
			p.frames.Add(1)
			next, fetched = seq+1, true
		}
		if pl.ended {
			return errors.New("the stream ended")
		}
		wait := pl.target
		if !fetched {
			wait /= 2
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// get fetches a playlist (returned, bounded by maxPlaylist) or a segment
// (counted and discarded; checked packet by packet when ts says it is
// MPEG-TS).
func get(ctx context.Context, client *http.Client, rawURL string, p *player, ts bool) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	body := &countingReader{r: resp.Body, p: p}
	if !strings.HasSuffix(req.URL.Path, ".m3u8") {
		if ts {
			return nil, checkTS(body)
		}
		_, err := io.Copy(io.Discard, body)
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(body, maxPlaylist+1))
	if err == nil && len(b) > maxPlaylist {
		err = fmt.Errorf("%w: a playlist of more than %d bytes", ErrBadMedia, maxPlaylist)
	}
	return b, err
}

// checkTS reads an MPEG-TS segment and checks that it is whole packets,
// each starting with the sync byte.
func checkTS(r io.Reader) error {
	var pkt [tsPacket]byte
	n := 0
	for {
		_, err := io.ReadFull(r, pkt[:])
		switch {
		case err == io.EOF && n > 0:
			return nil
		case err == io.EOF, err == io.ErrUnexpectedEOF:
			return fmt.Errorf("%w: a segment of %d whole TS packets and a part", ErrBadMedia, n)
		case err != nil:
			return err
		case pkt[0] != 0x47:
			return fmt.Errorf("%w: TS packet %d has no sync byte", ErrBadMedia, n)
		}
		n++
	}
}

func hlsErr(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, flvErr(ctx, err))
}
