package httpstream

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

var testNow = time.Unix(1_700_000_000, 0)

func TestTokenRoundTrip(t *testing.T) {
	c := tokenCodec{key: []byte("secret")}
	for _, tok := range []Token{
		{Kind: TokenFile, Origin: "127.0.0.1:8080", Path: "/live/livestream-12.ts"},
		{Kind: TokenFile, Origin: "[::1]:8080", Path: "/a/b/seg%20one.m4s"},
		{Kind: TokenDir, Origin: "origin-1.example.com:80", Path: "/live/"},
		{Kind: TokenDir, Origin: "10.0.0.5:8080", Path: "/"},
	} {
		tok.Expiry = testNow.Add(time.Minute)
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
		if got != tok && !(got.Expiry.Equal(tok.Expiry) && got.Kind == tok.Kind && got.Origin == tok.Origin && got.Path == tok.Path) {
			t.Errorf("got %+v, want %+v", got, tok)
		}
	}
}

func TestTokenEncodeRejects(t *testing.T) {
	c := tokenCodec{key: []byte("secret")}
	exp := testNow.Add(time.Minute)
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
		tok.Expiry = exp
		if s, err := c.Encode(tok); err == nil {
			t.Errorf("encode %+v = %q, want error", tok, s)
		}
	}
}

func TestTokenDecodeRejects(t *testing.T) {
	c := tokenCodec{key: []byte("secret")}
	good, err := c.Encode(Token{Kind: TokenFile, Origin: "127.0.0.1:8080", Path: "/live/s-1.ts", Expiry: testNow.Add(time.Minute)})
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
	other, _ := tokenCodec{key: []byte("other")}.Encode(Token{Kind: TokenFile, Origin: "127.0.0.1:8080", Path: "/live/s-1.ts", Expiry: testNow.Add(time.Minute)})
	// A correctly signed token carrying an unknown version.
	v2 := append([]byte(nil), raw[:len(raw)-tokenMACLen]...)
	v2[0] = 2
	v2tok := base64.RawURLEncoding.EncodeToString(c.sign(v2))
	// A correctly signed token with trailing garbage inside the signed body.
	trail := append(append([]byte(nil), raw[:len(raw)-tokenMACLen]...), 'x')
	trailTok := base64.RawURLEncoding.EncodeToString(c.sign(trail))
	// A correctly signed token whose path escapes its directory.
	evil := []byte{tokenVersion, byte(TokenFile)}
	evil = append(evil, 0xff, 0xff, 0xff, 0xff, 0x0f) // large but valid uvarint expiry
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
		{"truncated odd", good[:len(good)-3], testNow, ErrTokenMalformed},
		{"short", good[:10], testNow, ErrTokenMalformed},
		{"tiny", "AAAA", testNow, ErrTokenMalformed},
		{"oversized", strings.Repeat("A", MaxTokenLen+1), testNow, ErrTokenTooLong},
		{"flipped body", flip(5), testNow, ErrTokenSignature},
		{"flipped mac", flip(len(raw) - 1), testNow, ErrTokenSignature},
		{"wrong key", other, testNow, ErrTokenSignature},
		{"expired", good, testNow.Add(time.Minute), ErrTokenExpired},
		{"long expired", good, testNow.Add(time.Hour), ErrTokenExpired},
		{"version", v2tok, testNow, ErrTokenVersion},
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
	if _, err := c.Decode(good, testNow.Add(59*time.Second)); err != nil {
		t.Errorf("token rejected before expiry: %v", err)
	}
}

func FuzzToken(f *testing.F) {
	c := tokenCodec{key: []byte("fuzz")}
	good, _ := c.Encode(Token{Kind: TokenFile, Origin: "127.0.0.1:8080", Path: "/live/s-1.ts", Expiry: testNow.Add(time.Minute)})
	dir, _ := c.Encode(Token{Kind: TokenDir, Origin: "127.0.0.1:8080", Path: "/live/", Expiry: testNow.Add(time.Minute)})
	f.Add(good, "127.0.0.1:8080", "/live/s-1.ts")
	f.Add(dir, "h:1", "/a/")
	f.Add("", "", "")
	f.Add("AQE", "h:1", "/..")
	f.Fuzz(func(t *testing.T, s, origin, path string) {
		// Arbitrary input never panics, and anything accepted is well formed.
		if tok, err := c.Decode(s, testNow); err == nil {
			if err := tok.check(); err != nil {
				t.Fatalf("accepted bad token %+v: %v", tok, err)
			}
		}
		// Anything encodable round-trips.
		for _, kind := range []TokenKind{TokenFile, TokenDir} {
			in := Token{Kind: kind, Origin: origin, Path: path, Expiry: testNow.Add(time.Minute)}
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
