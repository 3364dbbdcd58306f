// Package dashboard serves the live web dashboard of an srs-mesh node: one
// HTML page with its script and style sheet, and the uPlot chart library
// (uPlot.iife.min.js and uPlot.min.css, v1.6.32, MIT: uPlot.LICENSE.txt),
// embedded in the binary (no build step, no external resources).
//
// The page runs in the browser and reads the cluster API of the node that
// served it (same origin, relative URLs), every 2 s:
//
//	GET  mesh/v1/status                  members, origins, assignments
//	GET  mesh/v1/streams                 clients and bit rates per stream (optional: a 404 or error is ignored)
//	GET  mesh/v1/events?limit=50         the events timeline (optional)
//	GET  mesh/v1/history                 every node's samples, merged into the charts (optional; every 4 s)
//	POST mesh/v1/origins/{id}/drain      with "Authorization: Bearer <token>"
//	POST mesh/v1/origins/{id}/undrain
//
// The drain buttons appear only once an operator token is entered; the page
// keeps it in the tab's sessionStorage and sends it to nothing but the node.
package dashboard

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// ErrNotFound is answered for paths that are not a dashboard asset.
var ErrNotFound = errors.New("dashboard: no such page")

// contentTypes maps the extensions of the embedded files to their types.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".txt":
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}

// Handler serves the dashboard page at "/" and its assets ("/app.js",
// "/style.css"). It answers GET and HEAD; other methods get a JSON 405 and
// other paths a JSON 404, like the rest of the system API. Answers carry a
// Content-Security-Policy that allows nothing but the node itself.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
			return
		}
		name := strings.TrimPrefix(r.URL.Path, "/")
		if name == "" {
			name = "index.html"
		}
		if strings.Contains(name, "/") || !fs.ValidPath(name) {
			writeError(w, http.StatusNotFound, ErrNotFound.Error())
			return
		}
		b, err := static.ReadFile("static/" + name)
		if err != nil {
			writeError(w, http.StatusNotFound, ErrNotFound.Error())
			return
		}
		h := w.Header()
		h.Set("Content-Type", contentType(name))
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
	})
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{status, msg})
}
