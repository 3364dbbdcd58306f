package fanout

import (
	"context"
	"encoding/binary"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/srs-mesh/srs-mesh/stream"
)

// StreamKey is the key under which players of stream key with query share
// an upstream, whatever their protocol: RTMP and HTTP-FLV players with the
// same stream and the same query share one. The query is part of the key
// so that a player never rides on the approval of another query (SRS's
// on_play sees every distinct query). What else an origin's hook may look
// at (the client's address, its page) is the first player's: an origin
// that authorizes by those needs one upstream per player (no fan-out).
func StreamKey(key stream.Key, query string) string {
	return key.String() + "?" + query
}

// StreamOf returns the stream part of a key made by StreamKey (the
// stream key's String), for reports such as Reattach.Key.
func StreamOf(key string) string {
	s, _, _ := strings.Cut(key, "?")
	return s
}

// Upstream opens a play of key (with the query a player's request
// carried) on origin and returns it as a Source, for the players of a
// protocol to be served from another protocol's upstream: HTTP-FLV players
// from an RTMP play of an origin that serves no HTTP-FLV (the RTMP
// server's OpenFLV). An error wrapping ErrRefused says the origin refused
// the play.
type Upstream func(ctx context.Context, origin stream.Origin, key stream.Key, query string) (Source, error)

// Source is an upstream a hub reads: an FLV byte stream from an origin's
// HTTP answer (FLVSource), or an origin's RTMP play leg turned into tags.
// ReadHeader is called once, before any ReadTag, and returns the FLV file
// header to send to players (HeaderSize bytes). ReadTag returns io.EOF at
// the stream's clean end (the publisher stopped) and any other error when
// the upstream failed; a hub with Config.Reattach re-attaches only after
// the latter. Close unblocks a ReadHeader or ReadTag in progress; it may be
// called from another goroutine and more than once.
//
// A Source is one live copy of a stream, and a hub may switch its players
// from one Source to another (today when an upstream fails and the hub
// re-attaches, and on a planned move, Registry.Switch; later between the
// sources of a stream: replicas, backup encoders). A Source therefore knows nothing of the
// others, and the hub keeps this contract for the players:
//
//   - A Source's timestamps are its own: it need not continue another's.
//     When the players already had the new Source's first keyframe (the
//     same type and body bytes; a copy of the same publish), the hub maps
//     the new timestamps onto theirs by it and drops the frames they had;
//     otherwise it rebases them so that what players get continues,
//     monotonic (modulo 2^32), from the last tag they had, one frame
//     later.
//   - A switch happens at a keyframe: the new Source's frames ahead of its
//     first keyframe (first audio frame, in a stream without video) are
//     dropped, and, when rebased, the GOP cached from the old one is not
//     served again.
//   - Metadata and sequence headers are re-sent: a Source sends its own
//     (onMetaData, then the sequence headers) ahead of its first frame, as
//     an origin's play does, and they reach every player ahead of the
//     keyframe (on a planned or aligned switch, only those that changed).
//     A Source that sends none leaves the old ones in force.
//   - Only the first Source's header reaches the players; later ones'
//     are read and dropped. Tags must be classified (NewTag, Reader):
//     the hub finds keyframes and sequence headers by Tag.Kind.
//
// Players (Subscriber) never learn which Source feeds them: a switch is
// invisible to them but for the gap.
type Source interface {
	ReadHeader() ([]byte, error)
	ReadTag() (Tag, error)
	Close() error
}

// FLVSource returns a Source that parses body as an FLV stream, with tag
// bodies bounded by maxBody (see NewReader). Closing it closes body.
func FLVSource(body io.ReadCloser, maxBody int) Source {
	return flvSource{NewReader(body, maxBody), body}
}

type flvSource struct {
	*Reader
	io.Closer
}

// Tracked returns src with end called once when it is first closed (to
// count the upstream while it is open).
func Tracked(src Source, end func()) Source {
	return &tracked{Source: src, end: end}
}

type tracked struct {
	Source
	once sync.Once
	end  func()
}

func (t *tracked) Close() error {
	t.once.Do(t.end)
	return t.Source.Close()
}

// Header returns an FLV file header (HeaderSize bytes, PreviousTagSize0
// included) announcing audio, video or both.
func Header(audio, video bool) []byte {
	h := []byte{'F', 'L', 'V', 1, 0, 0, 0, 0, 9, 0, 0, 0, 0}
	if audio {
		h[4] |= 0x04
	}
	if video {
		h[4] |= 0x01
	}
	return h
}

// NewTag returns the tag of type typ at timestamp ts with body (copied, so
// the caller may reuse body), classified, its Data framed as on the wire.
func NewTag(typ uint8, ts uint32, body []byte) Tag {
	data := make([]byte, tagHeaderSize+len(body)+prevSizeLen)
	data[0] = typ
	n := len(body)
	data[1], data[2], data[3] = byte(n>>16), byte(n>>8), byte(n)
	putTimestamp(data, ts)
	copy(data[tagHeaderSize:], body)
	binary.BigEndian.PutUint32(data[tagHeaderSize+n:], uint32(tagHeaderSize+n))
	return Tag{Type: typ, Timestamp: ts, Kind: Classify(typ, body), Data: data}
}

// putTimestamp writes ts into a tag's header: 24 low bits, then the
// extended byte.
func putTimestamp(data []byte, ts uint32) {
	data[4], data[5], data[6], data[7] = byte(ts>>16), byte(ts>>8), byte(ts), byte(ts>>24)
}

// TagInfo returns the type, timestamp and body of a tag's wire form (one of
// the buffers Subscriber.Next returns, other than the FLV header), and
// false when b is not a whole tag.
func TagInfo(b []byte) (typ uint8, ts uint32, body []byte, ok bool) {
	if len(b) < tagHeaderSize+prevSizeLen {
		return 0, 0, nil, false
	}
	n := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
	if len(b) != tagHeaderSize+n+prevSizeLen {
		return 0, 0, nil, false
	}
	ts = uint32(b[7])<<24 | uint32(b[4])<<16 | uint32(b[5])<<8 | uint32(b[6])
	return b[0] & 0x1f, ts, b[tagHeaderSize : tagHeaderSize+n], true
}

// IsHeader reports whether b, a buffer Subscriber.Next returned, is the FLV
// file header rather than a tag.
func IsHeader(b []byte) bool {
	return len(b) == HeaderSize && b[0] == 'F' && b[1] == 'L' && b[2] == 'V'
}

// rebaser keeps a stream's timestamps monotonic across re-attaches: tags
// of a new upstream are shifted so that its first media frame follows the
// last tag delivered from the old one, and for the first switchGuard tags
// after a switch none goes back before the old upstream's last (a frame
// of one track a little older than the other's first, a late sequence
// header). Before any re-attach it changes nothing. All arithmetic is
// modulo 2^32, as FLV and RTMP timestamps wrap.
type rebaser struct {
	last    uint32 // the latest timestamp delivered
	any     bool   // last is set
	pending bool   // a re-attach happened and its first media frame is awaited
	floor   uint32 // timestamps at or before the switch map here
	offset  uint32 // added to every timestamp of the current upstream
	before  uint32 // the old upstream's last timestamp
	guard   int    // tags left to keep above before
	keyWait int    // frames of the new upstream still to drop while its first keyframe is awaited

	// Per track, for a switch aligned by content (align): the latest
	// audio and video timestamps delivered, and whether frames of the
	// new upstream at or before them are still dropped as repeats.
	lastA, lastV   uint32
	anyA, anyV     bool
	dedupA, dedupV bool
	repeatsLeft    int // bounds the repeats dropped after one switch
	repeats        int // frames dropped as repeats since the last switch
}

// switchGap is how far after the last delivered tag a new upstream's first
// frame is placed, in milliseconds: about one video frame.
const switchGap = 40

// switchGuard is how many tags after a switch are kept above the old
// upstream's last timestamp.
const switchGuard = 1000

// switchKeyWait bounds the frames of a new upstream dropped while its first
// keyframe is awaited (at 30 video and 47 audio frames a second, about 13
// seconds): an upstream that sends none by then is delivered as it comes.
const switchKeyWait = 1000

// reattached starts rebasing the next upstream's tags.
func (r *rebaser) reattached() {
	r.dedupA, r.dedupV, r.repeats = false, false, 0
	if r.any {
		r.pending = true
		r.floor = r.last + switchGap
		r.before = r.last
		r.guard = switchGuard
		r.keyWait = switchKeyWait
	}
}

// skip reports whether t, a tag of the current upstream, is a frame ahead
// of that upstream's first keyframe after a switch (in a stream without
// video, ahead of its first audio frame): players switch at a keyframe, so
// such frames are dropped. Metadata and sequence headers are never
// dropped; they reach the players ahead of the keyframe. hasVideo says
// whether the stream has video.
func (r *rebaser) skip(t Tag, hasVideo bool) bool {
	if r.keyWait == 0 || (t.Type != TagAudio && t.Type != TagVideo) || t.Kind == KindVideoSeq || t.Kind == KindAudioSeq {
		return false
	}
	if t.Kind == KindKeyframe || !hasVideo && t.Type == TagAudio {
		r.keyWait = 0
		return false
	}
	r.keyWait--
	return true
}

// apply rewrites t's timestamp (in t.Data too) and returns it.
func (r *rebaser) apply(t Tag) Tag {
	ts := t.Timestamp
	switch {
	case r.pending && (t.Type == TagAudio || t.Type == TagVideo) && t.Kind != KindVideoSeq && t.Kind != KindAudioSeq:
		// The first frame of the new upstream sets its offset.
		r.offset = r.floor - ts
		r.pending = false
		ts = r.floor
	case r.pending:
		// Metadata and sequence headers ahead of it go at the switch.
		ts = r.floor
	default:
		ts += r.offset
	}
	if r.guard > 0 {
		r.guard--
		if int32(ts-r.before) <= 0 {
			ts = r.before + 1
		}
	}
	if r.offset != 0 || ts != t.Timestamp {
		t.Timestamp = ts
		putTimestamp(t.Data, ts)
	}
	if !r.any || int32(ts-r.last) > 0 {
		r.last, r.any = ts, true
	}
	switch t.Type {
	case TagAudio:
		if !r.anyA || int32(ts-r.lastA) > 0 {
			r.lastA, r.anyA = ts, true
		}
	case TagVideo:
		if !r.anyV || int32(ts-r.lastV) > 0 {
			r.lastV, r.anyV = ts, true
		}
	}
	return t
}

// Follow returns an Opener that follows a stream from origin to origin.
// Its first call opens on first (the origin the first player was routed
// to); each later call, a re-attach, asks route (bounded by routeTimeout)
// where the stream lives now and opens there, and says which origins it
// left and reached (Opened.Origins). open gets the origin and whether the
// call is the first, and returns the Source and, for the first call, the
// Opened.Info. Every upstream it opens can tell, at a clean end, whether
// the stream moved (Opened.Moved): route then names another origin than
// the one it plays.
func Follow(first stream.Origin, route func(context.Context) (stream.Origin, error), routeTimeout time.Duration,
	open func(ctx context.Context, o stream.Origin, first bool) (Source, any, error)) Opener {
	last, opened := first, false
	return func(ctx context.Context) (Opened, error) {
		o, isFirst := first, !opened
		if !isFirst {
			rctx, cancel := context.WithTimeout(ctx, routeTimeout)
			var err error
			o, err = route(rctx)
			cancel()
			if err != nil {
				return Opened{}, err
			}
		}
		opened = true
		src, info, err := open(ctx, o, isFirst)
		if err != nil {
			return Opened{}, err
		}
		up := Opened{Source: src, Moved: func(ctx context.Context) bool {
			rctx, cancel := context.WithTimeout(ctx, routeTimeout)
			defer cancel()
			now, err := route(rctx)
			return err == nil && now.ID != o.ID
		}}
		if isFirst {
			up.Info = info
		} else {
			up.Origins = Origins{From: last.ID, To: o.ID}
		}
		last = o
		return up, nil
	}
}
