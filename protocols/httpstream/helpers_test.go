package httpstream

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/srs-mesh/srs-mesh/protocols/internal/protocoltest"
	"github.com/srs-mesh/srs-mesh/stream"
)

// routerFunc is a Router made of a function.
func routerFunc(f func(stream.Key) (stream.Origin, error)) protocoltest.RouterFunc {
	return func(_ context.Context, k stream.Key) (stream.Origin, error) { return f(k) }
}

// staticRouter routes every key to one origin HTTP endpoint.
func staticRouter(httpAddr string) stream.Router {
	return protocoltest.RouteTo(stream.Origin{ID: "o1", HTTP: httpAddr})
}

// httpClient is for probing origins directly in tests.
var httpClient = &http.Client{Timeout: 5 * time.Second}

// quietLogger drops the warnings tests provoke on purpose.
var quietLogger = slog.New(slog.DiscardHandler)
