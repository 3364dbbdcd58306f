package harness

import (
	"context"
	"fmt"
	"hash/fnv"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/fanout"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
)

// FrameWatch plays a stream with a client that parses every message (RTMP
// or HTTP-FLV, not FFmpeg) and measures what a viewer sees, frame by
// frame: the longest wall-clock gap between two video frames, frames that
// came twice (the same bytes again within the last recentFrames), and
// timestamps that went back.
type FrameWatch struct {
	URL string

	mu       sync.Mutex
	frames   int
	last     time.Time
	longest  time.Duration
	lastTS   uint32
	back     int
	repeats  int
	recent   []uint64 // hashes of the last frames, a ring
	next     int
	seen     map[uint64]int
	err      error
	done     chan struct{}
	bytes    atomic.Int64
	gapStart time.Time // start of the longest gap, for the log
}

// recentFrames is how far back FrameWatch looks for a repeated frame.
const recentFrames = 512

// WatchFrames starts watching rawURL (rtmp:// or an http .flv URL) until
// the test ends.
func WatchFrames(t testing.TB, rawURL string) *FrameWatch {
	t.Helper()
	w := &FrameWatch{URL: rawURL, done: make(chan struct{}), seen: map[uint64]int{}, recent: make([]uint64, 0, recentFrames)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(w.done)
		var err error
		if strings.HasPrefix(rawURL, "rtmp://") {
			err = readRTMP(ctx, rawURL, &w.bytes, func(m *chunk.Message) {
				if m.Type == chunk.TypeVideo && len(m.Payload) > 2 && !(m.Payload[1] == 0 && m.Payload[0]&0x0f == 7) {
					w.frame(m.Timestamp, m.Payload)
				}
			})
		} else {
			err = readFLV(ctx, rawURL, w)
		}
		if ctx.Err() == nil {
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-w.done
	})
	return w
}

func readFLV(ctx context.Context, rawURL string, w *FrameWatch) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", rawURL, resp.Status)
	}
	r := fanout.NewReader(&countingReader{r: resp.Body, n: &w.bytes}, 16<<20)
	if _, err := r.ReadHeader(); err != nil {
		return err
	}
	for {
		tag, err := r.ReadTag()
		if err != nil {
			return err
		}
		if tag.Type == fanout.TagVideo && tag.Kind != fanout.KindVideoSeq {
			w.frame(tag.Timestamp, tag.Body())
		}
	}
}

// frame records one video frame.
func (w *FrameWatch) frame(ts uint32, body []byte) {
	h := fnv.New64a()
	h.Write(body)
	sum := h.Sum64()
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.frames > 0 {
		if gap := now.Sub(w.last); gap > w.longest {
			w.longest, w.gapStart = gap, w.last
		}
		if int32(ts-w.lastTS) < 0 {
			w.back++
		}
	}
	if w.seen[sum] > 0 {
		w.repeats++
	}
	if len(w.recent) == recentFrames {
		old := w.recent[w.next]
		if w.seen[old]--; w.seen[old] <= 0 {
			delete(w.seen, old)
		}
		w.recent[w.next] = sum
		w.next = (w.next + 1) % recentFrames
	} else {
		w.recent = append(w.recent, sum)
	}
	w.seen[sum]++
	w.frames++
	w.last, w.lastTS = now, ts
}

// FrameStats is what a FrameWatch saw so far.
type FrameStats struct {
	Frames int
	// LongestGap is the longest wall-clock time between two video frames,
	// or since the last one; GapStart is when it began.
	LongestGap time.Duration
	GapStart   time.Time
	// Repeats are frames whose bytes came again; Backwards, timestamps
	// lower than the previous frame's.
	Repeats, Backwards int
	// Err is why the play ended, nil while it runs.
	Err error
}

// Stats returns what w saw so far.
func (w *FrameWatch) Stats() FrameStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := FrameStats{Frames: w.frames, LongestGap: w.longest, GapStart: w.gapStart, Repeats: w.repeats, Backwards: w.back, Err: w.err}
	if w.frames > 0 {
		if open := time.Since(w.last); open > st.LongestGap {
			st.LongestGap, st.GapStart = open, w.last
		}
	}
	return st
}

// ResetGap forgets the gaps seen so far (the start of a play is not the
// switch being measured).
func (w *FrameWatch) ResetGap() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.longest, w.repeats, w.back = 0, 0, 0
}
