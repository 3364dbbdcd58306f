package httpjson

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestAnswers(t *testing.T) {
	for _, c := range []struct {
		write func(w http.ResponseWriter)
		code  int
		body  string
	}{
		{func(w http.ResponseWriter) { Error(w, 404, "no such stream") }, 404, `{"code":404,"message":"no such stream"}` + "\n"},
		{func(w http.ResponseWriter) { OK(w, []int{1}) }, 200, `{"code":0,"data":[1]}` + "\n"},
		{func(w http.ResponseWriter) { Write(w, 404, ErrorBody{Code: 2048, Message: "x"}) }, 404, `{"code":2048,"message":"x"}` + "\n"},
	} {
		w := httptest.NewRecorder()
		c.write(w)
		if w.Code != c.code || w.Body.String() != c.body || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("got %d %q %q, want %d %q", w.Code, w.Body, w.Header().Get("Content-Type"), c.code, c.body)
		}
	}
}
