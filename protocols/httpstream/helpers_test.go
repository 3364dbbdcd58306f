package httpstream

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/srs-mesh/srs-mesh/stream"
)

// routerFunc is a Router made of a function.
type routerFunc func(stream.Key) (stream.Origin, error)

func (f routerFunc) Route(_ context.Context, k stream.Key) (stream.Origin, error) { return f(k) }

// staticRouter routes every key to one origin HTTP endpoint.
func staticRouter(httpAddr string) Router {
	return routerFunc(func(stream.Key) (stream.Origin, error) {
		return stream.Origin{ID: "o1", HTTP: httpAddr}, nil
	})
}

// httpClient is for probing origins directly in tests.
var httpClient = &http.Client{Timeout: 5 * time.Second}

// quietLogger drops the warnings tests provoke on purpose.
var quietLogger = slog.New(slog.DiscardHandler)
