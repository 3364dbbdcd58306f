# srs-mesh developer targets. The README's test command is the one CI runs.
GO      ?= go
BIN     ?= bin/srs-mesh
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 10s

.PHONY: build test unit e2e attack bench fuzz vet fmt clean deps demo

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/srs-mesh

# A 3-node mesh and an nginx-rtmp origin on 127.0.0.1 (the README's quick
# start); Ctrl-C stops it.
demo: build
	$(BIN) demo

# Everything: unit, in-process mesh and end-to-end tests (e2e tests skip
# cleanly when ffmpeg or nginx-rtmp are missing; `make deps` installs them).
test:
	$(GO) test -count=1 -timeout 30m ./...

# Unit tests, plus the layering rules (imports, go.mod) that test/ checks.
unit:
	$(GO) test -count=1 -short ./stream/... ./mesh/... ./protocols/... ./cmd/...
	$(GO) test -count=1 -run '^(TestImportRules|TestModTidy)$$' ./test/

e2e:
	$(GO) test -count=1 -timeout 20m -v ./test/...

# The client-side attack run (test/attack.sh): every TestSecurity* and
# TestAttack* end-to-end test, each next to a legitimate stream.
attack:
	test/attack.sh

# Benchmarks whose figures are recorded in docs/benchmarks.md.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./stream/... ./mesh/... ./protocols/...

# Short runs of every fuzz target (go test runs one -fuzz target at a time).
# A run that ends with the fuzzing engine's own "context deadline exceeded"
# and no failing input (golang/go#51484) is not a finding.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; \
	    if ! $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg > .fuzz.log 2>&1; then \
	      if grep -q 'context deadline exceeded' .fuzz.log && ! grep -q 'Failing input written' .fuzz.log; then \
	        echo "   (fuzzing engine timeout, no failing input)"; \
	      else cat .fuzz.log; rm -f .fuzz.log; exit 1; fi; \
	    else tail -1 .fuzz.log; fi; \
	  done; \
	done; rm -f .fuzz.log

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# Debian packages the end-to-end tests use, and the pinned web players that
# the headless-Chromium tests load.
deps:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg nginx libnginx-mod-rtmp srt-tools chromium prometheus git
	npm ci --prefix test/web --ignore-scripts --no-audit --no-fund

clean:
	rm -rf bin
