package httpstream

import (
	"bytes"
	"strconv"
	"strings"
	"time"
)

// documentTTL is how long the origin's document doc of format f is reused
// by the document cache: Config.PlaylistCacheTTL when set, else what f
// derives from doc, at most maxDocumentTTL. A zero TTL is not cached.
func (s *Server) documentTTL(doc []byte, f docFormat) time.Duration {
	ttl := f.ttl(doc)
	if ttl > 0 && s.docTTL > 0 {
		return s.docTTL
	}
	return min(ttl, maxDocumentTTL)
}

// playlistTTL derives a playlist's TTL: half its target duration, the
// shortest reload interval RFC 8216 (section 6.3.4) allows a client after
// an unchanged playlist. A master playlist (no target duration) is never
// reused: SRS makes one per viewer (hls_ctx), which is that viewer's
// session and on_play authorization, and viewers must not share it.
func playlistTTL(doc []byte) time.Duration {
	if target, ok := targetDuration(doc); ok {
		return target / 2
	}
	return 0
}

// mpdTTL derives an MPD's TTL: half its minimumUpdatePeriod, else one
// second.
func mpdTTL(doc []byte) time.Duration {
	if p, ok := minimumUpdatePeriod(doc); ok && p > 0 {
		return p / 2
	}
	return time.Second
}

// minimumUpdatePeriod finds the MPD's minimumUpdatePeriod attribute. Only
// the MPD element has one.
func minimumUpdatePeriod(doc []byte) (time.Duration, bool) {
	const attr = `minimumUpdatePeriod=`
	i := bytes.Index(doc, []byte(attr))
	if i < 0 || i+len(attr) >= len(doc) {
		return 0, false
	}
	v := doc[i+len(attr):]
	q := v[0]
	if q != '"' && q != '\'' {
		return 0, false
	}
	end := bytes.IndexByte(v[1:], q)
	if end < 0 || end > 64 {
		return 0, false
	}
	return parseXSDuration(strings.TrimSpace(string(v[1 : 1+end])))
}

// parseXSDuration parses the xs:duration values MPDs use for periods:
// "PT2S", "PT0.5S", "PT1M30S", "P1DT2H", "P0Y0M0DT0H0M2.000S", with no
// sign, and years and months only as zero (their length varies). Values of
// a year or more are refused.
func parseXSDuration(s string) (time.Duration, bool) {
	rest, ok := strings.CutPrefix(s, "P")
	if !ok || rest == "" {
		return 0, false
	}
	var total float64
	inTime := false
	seen := ""
	for rest != "" {
		if rest[0] == 'T' {
			if inTime || len(rest) == 1 {
				return 0, false
			}
			inTime, rest = true, rest[1:]
			continue
		}
		n := 0
		for n < len(rest) && (rest[n] >= '0' && rest[n] <= '9' || rest[n] == '.') {
			n++
		}
		if n == 0 || n == len(rest) || n > 20 {
			return 0, false
		}
		v, err := strconv.ParseFloat(rest[:n], 64)
		if err != nil {
			return 0, false
		}
		unit := rest[n]
		var scale float64
		switch {
		case !inTime && (unit == 'Y' || unit == 'M') && v == 0:
			scale = 0 // zero years or months, as some packagers write
		case !inTime && unit == 'D':
			scale = 24 * 3600
		case inTime && unit == 'H':
			scale = 3600
		case inTime && unit == 'M':
			scale = 60
		case inTime && unit == 'S':
			scale = 1
		default:
			return 0, false
		}
		key := string(unit)
		if inTime {
			key = "T" + key
		}
		if strings.Contains(seen, key) {
			return 0, false
		}
		seen += key + ","
		total += v * scale
		rest = rest[n+1:]
	}
	if total >= 365*24*3600 {
		return 0, false
	}
	return time.Duration(total * float64(time.Second)), true
}
