package httpstream

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
)

// ErrNotMPD means a document is not a well-formed DASH MPD.
var ErrNotMPD = errors.New("httpstream: not a DASH MPD")

// mpdURLAttrs lists, per element, the attributes that hold URLs (ISO/IEC
// 23009-1 section 5.3.9).
var mpdURLAttrs = map[string][]string{
	"SegmentTemplate":     {"media", "initialization", "index", "bitstreamSwitching"},
	"SegmentURL":          {"media", "index"},
	"Initialization":      {"sourceURL"},
	"RepresentationIndex": {"sourceURL"},
	"BitstreamSwitching":  {"sourceURL"},
}

// mpdElem is an open element while rewriting: its local name and the origin
// URL its relative URLs resolve against.
type mpdElem struct {
	name    string
	base    *url.URL
	baseSet bool // a BaseURL child has set base
}

// rewriteMPD rewrites a DASH MPD so that every segment URL resolves, on the
// client, to a URL that m produced. base is the MPD's origin URL.
//
//   - An MPD-level <BaseURL> naming the MPD's directory is inserted when the
//     MPD has none, so relative SegmentTemplate/SegmentURL URLs resolve under
//     the mapped directory.
//   - Every existing <BaseURL> at any level is resolved against the origin
//     base in force and replaced by its mapping.
//   - URL attributes that would not resolve the same way under the mapped
//     base (absolute URLs, absolute paths, '..' segments) are resolved on the
//     origin side and mapped; template identifiers ($Number%05d$, ...) are
//     kept.
//
// Everything else is copied byte for byte. The document must be well formed
// XML with an MPD root element.
func rewriteMPD(src []byte, base *url.URL, m uriMapper) ([]byte, error) {
	if len(src) > MaxPlaylistSize {
		return nil, ErrPlaylistTooLarge
	}
	dec := xml.NewDecoder(bytes.NewReader(src))
	out := make([]byte, 0, len(src)+256)
	last := 0 // src[last:] is not yet copied to out
	var stack []mpdElem
	sawRoot, mpdBase := false, false
	var baseText []byte
	baseContent := -1 // offset after an open <BaseURL> tag
	skipEnd := false  // the next EndElement closes a self-closing tag already handled

	insertBase := func(at int, prefix string, b *url.URL) {
		dir, ok := m(b.ResolveReference(&url.URL{Path: "./"}))
		if !ok {
			return
		}
		out = append(out, src[last:at]...)
		last = at
		out = append(out, '<')
		out = append(out, prefix...)
		out = append(out, "BaseURL>"...)
		out = appendXMLEscaped(out, dir)
		out = append(out, "</"...)
		out = append(out, prefix...)
		out = append(out, "BaseURL>"...)
	}

	for {
		start := int(dec.InputOffset())
		tok, err := dec.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNotMPD, err)
		}
		end := int(dec.InputOffset())
		switch t := tok.(type) {
		case xml.StartElement:
			raw := src[start:end]
			if len(stack) == 0 {
				if sawRoot || t.Name.Local != "MPD" {
					return nil, fmt.Errorf("%w: root element %q", ErrNotMPD, t.Name.Local)
				}
				sawRoot = true
				stack = append(stack, mpdElem{name: "MPD", base: base})
				continue
			}
			parent := &stack[len(stack)-1]
			if len(stack) == 1 && !mpdBase && t.Name.Local != "BaseURL" && t.Name.Local != "ProgramInformation" {
				insertBase(start, qualifier(t.Name), parent.base)
				mpdBase = true
			}
			stack = append(stack, mpdElem{name: t.Name.Local, base: parent.base})
			if t.Name.Local == "BaseURL" {
				if len(stack) == 2 {
					mpdBase = true
				}
				baseText, baseContent = baseText[:0], end
				if bytes.HasSuffix(raw, []byte("/>")) {
					// <BaseURL/>: the parent's own base.
					if repl, ok := m(parent.base.ResolveReference(&url.URL{Path: "./"})); ok {
						out = append(out, src[last:start]...)
						out = append(out, '<')
						out = append(out, qualifier(t.Name)...)
						out = append(out, "BaseURL>"...)
						out = appendXMLEscaped(out, repl)
						out = append(out, "</"...)
						out = append(out, qualifier(t.Name)...)
						out = append(out, "BaseURL>"...)
						last = end
					}
					parent.baseSet = true
					baseContent = -1
					skipEnd = true
				}
				continue
			}
			if names, ok := mpdURLAttrs[t.Name.Local]; ok {
				if repl, changed := rewriteTagAttrs(raw, t.Attr, names, parent.base, m); changed {
					out = append(out, src[last:start]...)
					out = append(out, repl...)
					last = end
				}
			}
		case xml.CharData:
			if baseContent >= 0 {
				baseText = append(baseText, t...)
			}
		case xml.EndElement:
			if len(stack) == 0 {
				return nil, fmt.Errorf("%w: unbalanced end tag %q", ErrNotMPD, t.Name.Local)
			}
			top := stack[len(stack)-1]
			if top.name != t.Name.Local {
				return nil, fmt.Errorf("%w: end tag %q closes %q", ErrNotMPD, t.Name.Local, top.name)
			}
			switch {
			case skipEnd:
				skipEnd = false
			case top.name == "BaseURL" && baseContent >= 0 && len(stack) >= 2:
				parent := &stack[len(stack)-2]
				text := strings.TrimSpace(string(baseText))
				if text == "" {
					text = "./"
				}
				ref, err := url.Parse(text)
				if err == nil {
					resolved := parent.base.ResolveReference(ref)
					if repl, ok := m(resolved); ok {
						out = append(out, src[last:baseContent]...)
						out = appendXMLEscaped(out, repl)
						last = start
					}
					if !parent.baseSet {
						parent.base, parent.baseSet = resolved, true
					}
				}
				baseContent = -1
			case len(stack) == 1 && !mpdBase && end > start:
				// (A self-closing <MPD/> has no content to resolve, and
				// no place inside it for a BaseURL.)
				insertBase(start, qualifier(t.Name), top.base)
				mpdBase = true
			}
			stack = stack[:len(stack)-1]
		}
	}
	if !sawRoot || len(stack) != 0 {
		return nil, fmt.Errorf("%w: no complete MPD element", ErrNotMPD)
	}
	return append(out, src[last:]...), nil
}

// qualifier returns "prefix:" for a prefixed element name, or "".
func qualifier(n xml.Name) string {
	if n.Space == "" {
		return ""
	}
	return n.Space + ":"
}

// rewriteTagAttrs rewrites the URL attributes (names) of one raw start tag
// that need it (see needsOriginResolve) and reports whether any changed.
// attrs are the decoded attributes of the same tag.
func rewriteTagAttrs(raw []byte, attrs []xml.Attr, names []string, base *url.URL, m uriMapper) ([]byte, bool) {
	var out []byte
	last := 0
	for _, span := range scanAttrs(raw) {
		name := string(raw[span.nameStart:span.nameEnd])
		if !contains(names, name) {
			continue
		}
		var val string
		for _, a := range attrs {
			if a.Name.Space == "" && a.Name.Local == name {
				val = a.Value
				break
			}
		}
		if !needsOriginResolve(val) {
			continue
		}
		repl, ok := mapTemplate(val, base, m)
		if !ok {
			continue
		}
		out = append(out, raw[last:span.valStart]...)
		out = appendXMLEscaped(out, repl)
		last = span.valEnd
	}
	if out == nil {
		return nil, false
	}
	return append(out, raw[last:]...), true
}

// attrSpan locates one attribute in a raw start tag.
type attrSpan struct {
	nameStart, nameEnd, valStart, valEnd int
}

// scanAttrs lists the attributes of a well-formed raw start tag
// ("<Name a='1' b=\"2\"/>"). It stops at the first thing it does not expect.
func scanAttrs(raw []byte) []attrSpan {
	var spans []attrSpan
	i := 1
	for i < len(raw) && !isXMLSpace(raw[i]) && raw[i] != '/' && raw[i] != '>' {
		i++
	}
	for {
		for i < len(raw) && isXMLSpace(raw[i]) {
			i++
		}
		if i >= len(raw) || raw[i] == '/' || raw[i] == '>' {
			return spans
		}
		ns := i
		for i < len(raw) && raw[i] != '=' && !isXMLSpace(raw[i]) && raw[i] != '>' {
			i++
		}
		ne := i
		for i < len(raw) && isXMLSpace(raw[i]) {
			i++
		}
		if i >= len(raw) || raw[i] != '=' {
			return spans
		}
		i++
		for i < len(raw) && isXMLSpace(raw[i]) {
			i++
		}
		if i >= len(raw) || (raw[i] != '"' && raw[i] != '\'') {
			return spans
		}
		q := raw[i]
		i++
		vs := i
		for i < len(raw) && raw[i] != q {
			i++
		}
		if i >= len(raw) {
			return spans
		}
		spans = append(spans, attrSpan{ns, ne, vs, i})
		i++
	}
}

func isXMLSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// needsOriginResolve reports whether a URL attribute would resolve
// differently under a rewritten base than under the origin's: absolute URLs,
// absolute or network paths, and paths with '..' segments.
func needsOriginResolve(v string) bool {
	if v == "" {
		return false
	}
	if v[0] == '/' {
		return true
	}
	if i := strings.IndexAny(v, ":/?#$"); i > 0 && v[i] == ':' {
		return true // scheme
	}
	p, _, _ := strings.Cut(v, "?")
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return true
		}
	}
	return false
}

// mapTemplate resolves a SegmentTemplate-style URL, whose $...$ identifiers
// may contain characters a URL cannot (such as "%05d"), against base and
// maps it, restoring the identifiers in the result.
func mapTemplate(v string, base *url.URL, m uriMapper) (string, bool) {
	var ids []string
	var b strings.Builder
	for {
		i := strings.IndexByte(v, '$')
		if i < 0 {
			b.WriteString(v)
			break
		}
		j := strings.IndexByte(v[i+1:], '$')
		if j < 0 {
			return "", false
		}
		b.WriteString(v[:i])
		id := v[i : i+j+2]
		if id == "$$" {
			b.WriteString(id)
		} else {
			b.WriteString("$" + strconv.Itoa(len(ids)) + "$")
			ids = append(ids, id)
		}
		v = v[i+j+2:]
	}
	ref, err := url.Parse(b.String())
	if err != nil {
		return "", false
	}
	out, ok := m(base.ResolveReference(ref))
	if !ok {
		return "", false
	}
	for n := len(ids) - 1; n >= 0; n-- {
		ph := "$" + strconv.Itoa(n) + "$"
		if !strings.Contains(out, ph) {
			return "", false
		}
		out = strings.Replace(out, ph, ids[n], 1)
	}
	return out, true
}

// appendXMLEscaped appends s escaped for an XML attribute or text node.
func appendXMLEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '&':
			dst = append(dst, "&amp;"...)
		case '<':
			dst = append(dst, "&lt;"...)
		case '>':
			dst = append(dst, "&gt;"...)
		case '"':
			dst = append(dst, "&quot;"...)
		case '\'':
			dst = append(dst, "&apos;"...)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
