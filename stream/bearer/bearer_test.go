package bearer

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestFromRequest(t *testing.T) {
	for _, c := range []struct{ url, auth, header, any string }{
		{"/x", "Bearer abc", "abc", "abc"},
		{"/x", "bearer  abc ", "abc", "abc"},
		{"/x?token=q", "Bearer h", "h", "h"}, // the header wins
		{"/x?token=q", "", "", "q"},
		{"/x?token=q", "Basic dXNlcg==", "", "q"},
		{"/x", "Bearer", "", ""},
	} {
		r := httptest.NewRequest("GET", c.url, nil)
		if c.auth != "" {
			r.Header.Set("Authorization", c.auth)
		}
		if h, a := FromHeader(r), FromRequest(r); h != c.header || a != c.any {
			t.Errorf("%s %q: header %q, request %q; want %q, %q", c.url, c.auth, h, a, c.header, c.any)
		}
	}
	if Match("", "") || Match("a", "") || Match("", "a") || Match("a", "b") || !Match("tok", "tok") {
		t.Error("Match")
	}
}

func TestGuard(t *testing.T) {
	ok := func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }
	call := func(h http.HandlerFunc, target, auth, remote string) int {
		r := httptest.NewRequest("POST", target, nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		if remote != "" {
			r.RemoteAddr = remote
		}
		w := httptest.NewRecorder()
		h(w, r)
		if w.Code == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("401 without a challenge")
		}
		return w.Code
	}
	g := Guard{Token: "tok"}
	for _, c := range []struct {
		h            http.HandlerFunc
		target, auth string
		want         int
	}{
		{g.Require(ok), "/x", "Bearer tok", 204},
		{g.Require(ok), "/x?token=tok", "", 204},
		{g.Require(ok), "/x", "", 401},
		{g.RequireHeader(ok), "/x?token=tok", "", 401},
		{g.RequireHeader(ok), "/x", "Bearer tok", 204},
		{Guard{}.Require(ok), "/x", "", 204},
		{Guard{}.RequireHeader(ok), "/x", "", 401},
		{Guard{}.RequireHeader(ok), "/x", "Bearer -", 204},
	} {
		if got := call(c.h, c.target, c.auth, ""); got != c.want {
			t.Errorf("%s %q: %d, want %d", c.target, c.auth, got, c.want)
		}
	}
	loop := httptest.NewRequest("GET", "/", nil)
	loop.RemoteAddr = "127.0.0.1:5"
	far := httptest.NewRequest("GET", "/", nil)
	far.RemoteAddr = "192.0.2.1:5"
	if !(Guard{}).Operator(loop) || (Guard{}).Operator(far) || g.Operator(loop) {
		t.Error("Operator")
	}
}
