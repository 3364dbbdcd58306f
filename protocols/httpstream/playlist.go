package httpstream

import (
	"bytes"
	"errors"
	"net/url"
)

// MaxPlaylistSize bounds a playlist or MPD read from an origin. Larger
// documents are refused (502) rather than buffered.
const MaxPlaylistSize = 1 << 20

// Playlist rewriting errors.
var (
	ErrNotPlaylist      = errors.New("httpstream: not an HLS playlist (no #EXTM3U)")
	ErrPlaylistTooLarge = errors.New("httpstream: playlist larger than MaxPlaylistSize")
)

// uriMapper maps a URI found in a playlist or MPD, already resolved against
// the document's origin URL, to the URI the client must use instead. It
// returns false to leave the URI exactly as the origin wrote it (another
// host, a data: or skd: URI).
type uriMapper func(u *url.URL) (string, bool)

// uriTags are the HLS tags whose URI attribute names a resource that the
// client fetches (RFC 8216 and its draft successor for the LL-HLS tags).
var uriTags = map[string]bool{
	"#EXT-X-MAP":                true,
	"#EXT-X-KEY":                true,
	"#EXT-X-SESSION-KEY":        true,
	"#EXT-X-MEDIA":              true,
	"#EXT-X-I-FRAME-STREAM-INF": true,
	"#EXT-X-PART":               true,
	"#EXT-X-PRELOAD-HINT":       true,
	"#EXT-X-RENDITION-REPORT":   true,
	"#EXT-X-SESSION-DATA":       true,
}

// rewritePlaylist rewrites an HLS media or master playlist line by line:
// every URI line and every URI="..." attribute of the tags in uriTags is
// resolved against base (the playlist's origin URL) and replaced by what m
// returns. Everything else (tags, comments, blank lines, CRLF or LF line
// ends) is copied unchanged. URIs that do not parse are left as they are.
//
// The function is pure: its output depends only on its input and m. It
// allocates the output and a few values per URI; it keeps nothing.
func rewritePlaylist(src []byte, base *url.URL, m uriMapper) ([]byte, error) {
	if len(src) > MaxPlaylistSize {
		return nil, ErrPlaylistTooLarge
	}
	out := make([]byte, 0, len(src)+len(src)/2)
	if bom := "\xef\xbb\xbf"; bytes.HasPrefix(src, []byte(bom)) {
		out, src = append(out, bom...), src[len(bom):]
	}
	if !bytes.HasPrefix(bytes.TrimLeft(src, " \t\r\n"), []byte("#EXTM3U")) {
		return nil, ErrNotPlaylist
	}
	for len(src) > 0 {
		var line []byte
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			line, src = src[:i+1], src[i+1:]
		} else {
			line, src = src, nil
		}
		content, eol := splitEOL(line)
		out = appendLine(out, content, base, m)
		out = append(out, eol...)
	}
	return out, nil
}

// splitEOL splits a line into its content and its "\n" or "\r\n" end.
func splitEOL(line []byte) (content, eol []byte) {
	n := len(line)
	if n > 0 && line[n-1] == '\n' {
		n--
		if n > 0 && line[n-1] == '\r' {
			n--
		}
	}
	return line[:n], line[n:]
}

// appendLine appends the rewritten form of one playlist line (without its
// line end) to out.
func appendLine(out, line []byte, base *url.URL, m uriMapper) []byte {
	trimmed := bytes.TrimSpace(line)
	switch {
	case len(trimmed) == 0:
		return append(out, line...)
	case trimmed[0] == '#':
		colon := bytes.IndexByte(trimmed, ':')
		if colon < 0 || !uriTags[string(trimmed[:colon])] {
			return append(out, line...)
		}
		start, end, ok := findQuotedAttr(trimmed[colon+1:], "URI")
		if !ok {
			return append(out, line...)
		}
		start, end = start+colon+1, end+colon+1
		repl, ok := mapURI(string(trimmed[start:end]), base, m)
		if !ok {
			return append(out, line...)
		}
		out = append(out, trimmed[:start]...)
		out = append(out, repl...)
		return append(out, trimmed[end:]...)
	default:
		repl, ok := mapURI(string(trimmed), base, m)
		if !ok {
			return append(out, line...)
		}
		return append(out, repl...)
	}
}

// mapURI resolves ref against base and asks m for its replacement. The
// replacement must be a single line and fit in a quoted attribute.
func mapURI(ref string, base *url.URL, m uriMapper) (string, bool) {
	r, err := url.Parse(ref)
	if err != nil {
		return "", false
	}
	repl, ok := m(base.ResolveReference(r))
	if !ok {
		return "", false
	}
	for i := 0; i < len(repl); i++ {
		if c := repl[i]; c == '"' || c == '\r' || c == '\n' {
			return "", false
		}
	}
	return repl, true
}

// findQuotedAttr finds the quoted value of attribute name in an HLS
// attribute list ("A=1,URI=\"x\",B=\"y,z\"") and returns the span of the
// value without its quotes.
func findQuotedAttr(list []byte, name string) (start, end int, ok bool) {
	i := 0
	for i < len(list) {
		for i < len(list) && (list[i] == ' ' || list[i] == ',') {
			i++
		}
		eq := bytes.IndexByte(list[i:], '=')
		if eq < 0 {
			return 0, 0, false
		}
		attr := bytes.TrimSpace(list[i : i+eq])
		i += eq + 1
		if i < len(list) && list[i] == '"' {
			closing := bytes.IndexByte(list[i+1:], '"')
			if closing < 0 {
				return 0, 0, false
			}
			if string(attr) == name {
				return i + 1, i + 1 + closing, true
			}
			i += closing + 2
			continue
		}
		if c := bytes.IndexByte(list[i:], ','); c >= 0 {
			i += c + 1
		} else {
			i = len(list)
		}
	}
	return 0, 0, false
}
