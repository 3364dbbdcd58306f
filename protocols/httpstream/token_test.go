package httpstream

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/testkit"
)

var testNow = time.Unix(1_700_000_000, 0)

// encodeV1 issues a version 1 token (with an expiry), as earlier releases
// did.
func encodeV1(c tokenCodec, t Token, expiry time.Time) string {
	b := binary.AppendUvarint([]byte{tokenVersionV1, byte(t.Kind)}, uint64(expiry.Unix()))
	b = binary.AppendUvarint(b, uint64(len(t.Origin)))
	b = append(b, t.Origin...)
	b = binary.AppendUvarint(b, uint64(len(t.Path)))
	b = append(b, t.Path...)
	return base64.RawURLEncoding.EncodeToString(c.sign(b))
}

func TestTokenRoundTrip(t *testing.T) {
	c := tokenCodec{key: []byte("secret")}
	for _, tok := range []Token{
		{Kind: TokenFile, Origin: "127.0.0.1:8080", Path: "/live/livestream-12.ts"},
		{Kind: TokenFile, Origin: "[::1]:8080", Path: "/a/b/seg%20one.m4s"},
		{Kind: TokenDir, Origin: "origin-1.example.com:80", Path: "/live/"},
		{Kind: TokenDir, Origin: "10.0.0.5:8080", Path: "/"},
	} {
		s, err := c.Encode(tok)
		if err != nil {
			t.Fatalf("encode %+v: %v", tok, err)
		}
		if strings.ContainsAny(s, "/+=?&") {
			t.Errorf("token %q is not URL safe", s)
		}
		got, err := c.Decode(s, testNow)
		if err != nil {
			t.Fatalf("decode %+v: %v", tok, err)
		}
		if got != tok {
			t.Errorf("got %+v, want %+v", got, tok)
		}
	}
}

func TestTokenEncodeRejects(t *testing.T) {
	c := tokenCodec{key: []byte("secret")}
	for _, tok := range []Token{
		{Kind: 0, Origin: "h:1", Path: "/a.ts"},
		{Kind: TokenFile, Origin: "", Path: "/a.ts"},
		{Kind: TokenFile, Origin: "nohostport", Path: "/a.ts"},
		{Kind: TokenFile, Origin: "h:1/x", Path: "/a.ts"},
		{Kind: TokenFile, Origin: "h:1", Path: "a.ts"},
		{Kind: TokenFile, Origin: "h:1", Path: "/../a.ts"},
		{Kind: TokenFile, Origin: "h:1", Path: "/x/%2e%2E/a.ts"},
		{Kind: TokenFile, Origin: "h:1", Path: "/a.ts?x=1"},
		{Kind: TokenFile, Origin: "h:1", Path: "/a//b.ts"},
		{Kind: TokenFile, Origin: "h:1", Path: "/live/"},
		{Kind: TokenDir, Origin: "h:1", Path: "/live"},
		{Kind: TokenFile, Origin: "h:1", Path: "/" + strings.Repeat("a", maxTokenField)},
	} {
		if s, err := c.Encode(tok); err == nil {
			t.Errorf("encode %+v = %q, want error", tok, s)
		}
	}
}

func TestTokenDecodeRejects(t *testing.T) {
	c := tokenCodec{key: []byte("secret")}
	good, err := c.Encode(Token{Kind: TokenFile, Origin: "127.0.0.1:8080", Path: "/live/s-1.ts"})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	// A token for another key with valid structure.
	other, _ := tokenCodec{key: []byte("other")}.Encode(Token{Kind: TokenFile, Origin: "127.0.0.1:8080", Path: "/live/s-1.ts"})
	// A correctly signed token carrying an unknown version.
	v3 := append([]byte(nil), raw[:len(raw)-tokenMACLen]...)
	v3[0] = 3
	v3tok := base64.RawURLEncoding.EncodeToString(c.sign(v3))
	// A version 1 token (with an expiry) as earlier releases issued it.
	v1tok := encodeV1(c, Token{Kind: TokenFile, Origin: "127.0.0.1:8080", Path: "/live/s-1.ts"}, testNow.Add(time.Minute))
	// A correctly signed token with trailing garbage inside the signed body.
	trail := append(append([]byte(nil), raw[:len(raw)-tokenMACLen]...), 'x')
	trailTok := base64.RawURLEncoding.EncodeToString(c.sign(trail))
	// A correctly signed token whose path escapes its directory.
	evil := []byte{tokenVersion, byte(TokenFile)}
	evil = append(evil, 3, 'h', ':', '1', 9)
	evil = append(evil, "/../a.ts"...)
	evilTok := base64.RawURLEncoding.EncodeToString(c.sign(evil))

	tests := []struct {
		name string
		tok  string
		now  time.Time
		want error
	}{
		{"empty", "", testNow, ErrTokenMalformed},
		{"not base64", "!!!!", testNow, ErrTokenMalformed},
		{"padding", good + "=", testNow, ErrTokenMalformed},
		{"truncated", good[:len(good)-4], testNow, ErrTokenSignature},
		{"truncated odd", good[:len(good)-len(good)%4-3], testNow, ErrTokenMalformed},
		{"short", good[:10], testNow, ErrTokenMalformed},
		{"tiny", "AAAA", testNow, ErrTokenMalformed},
		{"oversized", strings.Repeat("A", MaxTokenLen+1), testNow, ErrTokenTooLong},
		{"flipped body", flip(5), testNow, ErrTokenSignature},
		{"flipped mac", flip(len(raw) - 1), testNow, ErrTokenSignature},
		{"wrong key", other, testNow, ErrTokenSignature},
		{"v1 expired", v1tok, testNow.Add(time.Minute), ErrTokenExpired},
		{"v1 long expired", v1tok, testNow.Add(time.Hour), ErrTokenExpired},
		{"version", v3tok, testNow, ErrTokenVersion},
		{"trailing", trailTok, testNow, ErrTokenMalformed},
		{"dotdot", evilTok, testNow, ErrTokenMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Decode(tt.tok, tt.now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %+v, %v; want %v", got, err, tt.want)
			}
		})
	}
	if got, err := c.Decode(v1tok, testNow.Add(59*time.Second)); err != nil || got.Path != "/live/s-1.ts" {
		t.Errorf("version 1 token before its expiry: %+v, %v", got, err)
	}
	if _, err := c.Decode(good, testNow.Add(100*365*24*time.Hour)); err != nil {
		t.Errorf("token rejected later: %v", err)
	}
}

// A token is a pure function of the key and the origin object: issuing it
// again, at another time or from another codec with the same key, gives the
// same string (so playlist reloads and other nodes give the same URIs).
func TestTokenStable(t *testing.T) {
	tok := Token{Kind: TokenFile, Origin: "127.0.0.1:8080", Path: "/live/s-1.ts"}
	a, err := tokenCodec{key: []byte("k")}.Encode(tok)
	if err != nil {
		t.Fatal(err)
	}
	s := tokenCodec{key: []byte("k")}.signer()
	for range 3 {
		if b, _ := s.Encode(tok); b != a {
			t.Fatalf("token %q, then %q", a, b)
		}
	}
	if b, _ := (tokenCodec{key: []byte("other")}).Encode(tok); b == a {
		t.Fatal("another key gave the same token")
	}
}

func FuzzToken(f *testing.F) {
	c := tokenCodec{key: []byte("fuzz")}
	good, _ := c.Encode(Token{Kind: TokenFile, Origin: "127.0.0.1:8080", Path: "/live/s-1.ts"})
	dir, _ := c.Encode(Token{Kind: TokenDir, Origin: "127.0.0.1:8080", Path: "/live/"})
	f.Add(good, "127.0.0.1:8080", "/live/s-1.ts")
	f.Add(dir, "h:1", "/a/")
	f.Add("", "", "")
	f.Add("AQE", "h:1", "/..")
	f.Add("AgEDaDoxCS8uLi9hLnRz", "h:1", "/../a.ts")
	f.Fuzz(func(t *testing.T, s, origin, path string) {
		// Arbitrary input never panics, and anything accepted is well formed.
		if tok, err := c.Decode(s, testNow); err == nil {
			if err := tok.check(); err != nil {
				t.Fatalf("accepted bad token %+v: %v", tok, err)
			}
		}
		// Anything encodable round-trips.
		for _, kind := range []TokenKind{TokenFile, TokenDir} {
			in := Token{Kind: kind, Origin: origin, Path: path}
			enc, err := c.Encode(in)
			if err != nil {
				continue
			}
			out, err := c.Decode(enc, testNow)
			if err != nil || out.Origin != origin || out.Path != path || out.Kind != kind {
				t.Fatalf("round trip %+v -> %q -> %+v, %v", in, enc, out, err)
			}
		}
	})
}

// authority is a TokenAuthority with a settable key and one known origin.
type authority struct {
	key    []byte
	origin string
}

func (a *authority) TokenKey() ([]byte, bool)       { return a.key, a.key != nil }
func (a *authority) KnownHTTPOrigin(hp string) bool { return hp == a.origin }

// With a mesh authority, documents wait for the mesh's key (503), and a
// token signed with that key still fails when it names an origin the mesh
// does not know.
func TestTokenAuthority(t *testing.T) {
	origin := fakeSRS(t)
	a := &authority{origin: hostOf(origin)}
	s, err := New(Config{Router: staticRouter(hostOf(origin)), Tokens: a, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	if resp, _ := get(t, ts.URL+"/live/s.m3u8?hls_ctx=c"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("playlist before the mesh has a key: %d", resp.StatusCode)
	}
	a.key = []byte("0123456789abcdef0123456789abcdef")
	_, media := get(t, ts.URL+"/live/s.m3u8?hls_ctx=c")
	seg := uriLines(media)[2]
	if resp, body := get(t, ts.URL+seg); resp.StatusCode != 200 {
		t.Fatalf("segment of a known origin: %d %s", resp.StatusCode, body)
	}
	trip := testkit.NewTripwire(t)
	for _, origin := range []string{"169.254.169.254:80", trip.Addr()} {
		forged, err := tokenCodec{key: a.key}.Encode(Token{Kind: TokenFile, Origin: origin, Path: "/latest/meta-data"})
		if err != nil {
			t.Fatal(err)
		}
		if resp, body := get(t, ts.URL+hlsPrefix+forged+"/meta-data"); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("token for a foreign origin %s: %d %s", origin, resp.StatusCode, body)
		}
	}
	if got := trip.Connections(t); len(got) != 0 {
		t.Errorf("a token for an origin the mesh does not know made the proxy connect to it: %v", got)
	}
}
