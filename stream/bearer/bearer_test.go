package bearer

import (
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
