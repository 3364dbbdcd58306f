package e2e

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// modulePrefix is the import path prefix of this module's packages.
const modulePrefix = "github.com/srs-mesh/srs-mesh/"

// TestImportRules enforces the layering: cmd -> mesh, protocols/* -> stream.
// Protocol packages never import mesh or each other, stream imports nothing
// of ours, mesh imports no protocol, and mesh/state, the deterministic core
// of the mesh, imports no clock, no network, no gossip and nothing of ours but
// stream. The node's telemetry (mesh/telemetry, mesh/peers) imports neither
// the mesh root nor Raft nor gossip. The other rooms the Node composes
// (rooms: mesh/voters, mesh/members, mesh/upkeep, mesh/rtcsessions,
// mesh/liblog) never import the mesh root either; rooms says what else each
// must not import. It checks every import of every package's non-test files, the
// standard library and third-party modules included. Support shared by
// protocols (such as protocols/internal/drain) lives under protocols/internal
// and imports only stream; the fakes the protocols' tests share
// (protocols/internal/protocoltest) are imported by tests only. The fan-out
// room (protocols/fanout) is imported by the protocols that serve players
// from shared upstreams and imports only stream and protocols/internal.
func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, modulePrefix+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		for _, v := range importViolations(strings.TrimPrefix(fields[0], modulePrefix), fields[1:]) {
			t.Error(v)
		}
	}
}

// The checker itself: each rule fires on an import list that breaks it, and
// stays quiet on one that keeps it.
func TestImportRulesFire(t *testing.T) {
	for _, tc := range []struct {
		pkg     string
		imports []string
		bad     []string // the imports that must be reported, in order
	}{
		{"mesh/state", []string{"time"}, []string{"time"}},
		{"mesh/state", []string{"net", "net/http", "net/netip"}, []string{"net", "net/http", "net/netip"}},
		{"mesh/state", []string{"github.com/hashicorp/memberlist"}, []string{"github.com/hashicorp/memberlist"}},
		{"mesh/state", []string{modulePrefix + "mesh", modulePrefix + "mesh/streams"}, []string{"mesh", "mesh/streams"}},
		{"mesh/state/sub", []string{"time"}, []string{"time"}},
		{"mesh/state", []string{"container/heap", "context", "encoding/json", "github.com/hashicorp/raft",
			"github.com/srs-mesh/srs-mesh/stream", "network", "timeline"}, nil},
		// The rule is mesh/state's alone.
		{"mesh", []string{"time", "net/http", "github.com/hashicorp/memberlist", modulePrefix + "mesh/state"}, nil},
		{"mesh/statefulness", []string{"time"}, nil},

		{"stream", []string{"strings", modulePrefix + "mesh/state"}, []string{"mesh/state"}},
		{"protocols/webrtc", []string{modulePrefix + "mesh/state"}, []string{"mesh/state"}},
		{"protocols/rtmp", []string{modulePrefix + "protocols/http", modulePrefix + "protocols/rtmp/chunk"}, []string{"protocols/http"}},
		{"mesh/streams", []string{modulePrefix + "protocols/api"}, []string{"protocols/api"}},
		{"mesh", []string{modulePrefix + "cmd/srs-mesh"}, []string{"cmd/srs-mesh"}},
		{"cmd/srs-mesh", []string{modulePrefix + "mesh", modulePrefix + "protocols/webrtc", modulePrefix + "stream"}, nil},
		// Shared protocol support: any protocol may use it; it uses only stream.
		{"protocols/rtmp", []string{modulePrefix + "protocols/internal/drain", modulePrefix + "stream/httpjson"}, nil},
		{"protocols/internal/drain", []string{modulePrefix + "protocols/rtmp"}, []string{"protocols/rtmp"}},
		// The shared fakes: tests only.
		{"protocols/srt", []string{modulePrefix + "protocols/internal/protocoltest"}, []string{"protocols/internal/protocoltest"}},
		{"protocols/internal/protocoltest", []string{modulePrefix + "stream", "sync/atomic"}, nil},
		// The fan-out room: protocols import it; it imports only stream and
		// shared protocol support, never the mesh nor a protocol.
		{"protocols/rtmp", []string{modulePrefix + "protocols/fanout", modulePrefix + "stream"}, nil},
		{"protocols/httpstream", []string{modulePrefix + "protocols/fanout"}, nil},
		{"protocols/fanout", []string{modulePrefix + "stream", modulePrefix + "protocols/internal/route", "net/http"}, nil},
		{"protocols/fanout", []string{modulePrefix + "protocols/rtmp", modulePrefix + "protocols/httpstream", modulePrefix + "protocols/rtmp/chunk"},
			[]string{"protocols/rtmp", "protocols/httpstream", "protocols/rtmp/chunk"}},
		{"protocols/fanout", []string{modulePrefix + "mesh", modulePrefix + "mesh/state", modulePrefix + "stream/httpjson"},
			[]string{"mesh", "mesh/state", "stream/httpjson"}},
		{"protocols/fanout/sub", []string{modulePrefix + "protocols/webrtc"}, []string{"protocols/webrtc"}},
		{"mesh", []string{modulePrefix + "protocols/fanout"}, []string{"protocols/fanout"}},
		// The load client: wire formats only.
		{"loadclient", []string{modulePrefix + "protocols/rtmp/chunk", modulePrefix + "protocols/fanout", "net/http"}, nil},
		{"loadclient", []string{modulePrefix + "mesh", modulePrefix + "stream"}, []string{"mesh", "stream"}},
		// Telemetry: no mesh root, no Raft or gossip; peers knows no document.
		{"mesh/telemetry", []string{modulePrefix + "mesh", "github.com/hashicorp/raft", "github.com/hashicorp/memberlist"},
			[]string{"mesh", "github.com/hashicorp/raft", "github.com/hashicorp/memberlist"}},
		{"mesh/telemetry", []string{modulePrefix + "mesh/events", modulePrefix + "mesh/peers", modulePrefix + "mesh/streams", "net/http"}, nil},
		{"mesh/peers", []string{modulePrefix + "mesh/streams", "net/http"}, []string{"mesh/streams"}},
		// The voter set: Raft's configuration calls, but no mesh package and no gossip.
		{"mesh/voters", []string{modulePrefix + "mesh", modulePrefix + "mesh/state", "github.com/hashicorp/memberlist"},
			[]string{"mesh", "mesh/state", "github.com/hashicorp/memberlist"}},
		{"mesh/voters", []string{"github.com/hashicorp/raft", "net/http", modulePrefix + "stream/httpjson"}, nil},
		// The session store: commands of mesh/state, written through the node.
		{"mesh/rtcsessions", []string{modulePrefix + "mesh", modulePrefix + "mesh/telemetry", "github.com/hashicorp/raft", "github.com/hashicorp/memberlist"},
			[]string{"mesh", "mesh/telemetry", "github.com/hashicorp/raft", "github.com/hashicorp/memberlist"}},
		{"mesh/rtcsessions", []string{modulePrefix + "mesh/state", modulePrefix + "stream", "context"}, nil},
		{"mesh/liblog", []string{modulePrefix + "mesh", modulePrefix + "stream", "log/slog"}, []string{"mesh", "stream"}},
		{"mesh/members", []string{modulePrefix + "mesh", "github.com/hashicorp/memberlist", "github.com/hashicorp/raft"},
			[]string{"mesh", "github.com/hashicorp/memberlist", "github.com/hashicorp/raft"}},
		{"mesh/members", []string{modulePrefix + "mesh/events", "encoding/json"}, nil},
		{"mesh/upkeep", []string{modulePrefix + "mesh", "github.com/hashicorp/raft", "github.com/hashicorp/memberlist"},
			[]string{"mesh", "github.com/hashicorp/raft", "github.com/hashicorp/memberlist"}},
		{"mesh/upkeep", []string{modulePrefix + "mesh/state", modulePrefix + "mesh/health", modulePrefix + "mesh/events", "crypto/rand"}, nil},
	} {
		got := importViolations(tc.pkg, tc.imports)
		if len(got) != len(tc.bad) {
			t.Errorf("%s importing %v: got %q, want reports of %v", tc.pkg, tc.imports, got, tc.bad)
			continue
		}
		for i, imp := range tc.bad {
			if !strings.HasPrefix(got[i], tc.pkg+" imports "+imp+":") {
				t.Errorf("%s importing %v: report %q does not name %s", tc.pkg, tc.imports, got[i], imp)
			}
		}
	}
	// No room of the Node imports the mesh root.
	for pkg := range rooms {
		if got := importViolations(pkg, []string{modulePrefix + "mesh"}); len(got) != 1 {
			t.Errorf("%s importing the mesh root: got %q, want one report", pkg, got)
		}
	}
}

// importViolations returns one report per import that breaks a rule: pkg is
// a package path inside the module ("mesh/state"), imports are the full
// import paths of its non-test files, standard library and third-party
// included.
func importViolations(pkg string, imports []string) []string {
	var out []string
	report := func(dep, why string) { out = append(out, pkg+" imports "+dep+": "+why) }
	isState := pkg == "mesh/state" || strings.HasPrefix(pkg, "mesh/state/")
	for _, imp := range imports {
		dep, ours := strings.CutPrefix(imp, modulePrefix)
		if isState {
			switch {
			case imp == "time":
				report(dep, "the state machine reads no clock; commands carry their times")
				continue
			case imp == "net" || strings.HasPrefix(imp, "net/"):
				report(dep, "the state machine does no network I/O")
				continue
			case imp == "github.com/hashicorp/memberlist" || strings.HasPrefix(imp, "github.com/hashicorp/memberlist/"):
				report(dep, "the state machine knows no gossip")
				continue
			case ours && dep != "stream":
				report(dep, "the state machine imports nothing of ours but stream")
				continue
			}
		}
		if isTelemetry(pkg) {
			switch {
			case strings.HasPrefix(imp, "github.com/hashicorp/raft") || strings.HasPrefix(imp, "github.com/hashicorp/memberlist"):
				report(dep, "telemetry writes no replicated state and knows no gossip; the node hands it what it reads")
				continue
			case ours && dep == "mesh":
				report(dep, "telemetry gets what it needs from the node through its Config")
				continue
			case pkg == "mesh/peers" && ours:
				report(dep, "asking peers knows nothing of the documents")
				continue
			}
		}
		if why := roomViolation(pkg, imp, dep, ours); why != "" {
			report(dep, why)
			continue
		}
		if !ours {
			continue
		}
		switch {
		case pkg == "stream" && dep != "stream":
			report(dep, "the domain package imports nothing of ours")
		case dep == "protocols/internal/protocoltest":
			report(dep, "the shared protocol fakes are for tests only")
		case strings.HasPrefix(pkg, "protocols/") && strings.HasPrefix(dep, "mesh"):
			report(dep, "protocols declare the interface they need instead")
		case strings.HasPrefix(pkg, "protocols/internal/") && dep != "stream" && !strings.HasPrefix(dep, "stream/") &&
			!strings.HasPrefix(dep, "protocols/internal/"):
			report(dep, "shared protocol support imports only stream")
		case isFanOut(pkg) && dep != "stream" && !strings.HasPrefix(dep, "protocols/internal/"):
			report(dep, "the fan-out room imports only stream and shared protocol support; protocols import it, not the other way")
		case strings.HasPrefix(pkg, "protocols/") && strings.HasPrefix(dep, "protocols/") &&
			!strings.HasPrefix(dep, "protocols/internal/") && !isFanOut(dep) && protocolOf(pkg) != protocolOf(dep):
			report(dep, "protocols do not import each other")
		case strings.HasPrefix(pkg, "mesh") && strings.HasPrefix(dep, "protocols/"):
			report(dep, "mesh knows no protocol")
		case pkg == "loadclient" && (strings.HasPrefix(dep, "mesh") || dep == "stream" || strings.HasPrefix(dep, "stream/")):
			report(dep, "the load client is a client of nodes: it uses wire formats, never the mesh or the node's model")
		case !strings.HasPrefix(pkg, "cmd/") && !strings.HasPrefix(pkg, "test") && strings.HasPrefix(dep, "cmd/"):
			report(dep, "only commands import commands")
		}
	}
	return out
}

// A forbid is an import a room of the Node must not have, and why.
type forbid struct {
	bad func(imp, dep string, ours bool) bool
	why string
}

func raftImport(imp, _ string, _ bool) bool {
	return strings.HasPrefix(imp, "github.com/hashicorp/raft")
}

func gossipImport(imp, _ string, _ bool) bool {
	return strings.HasPrefix(imp, "github.com/hashicorp/memberlist")
}

func meshRoot(_, dep string, ours bool) bool { return ours && dep == "mesh" }

// meshBut is any mesh package but those of except.
func meshBut(except ...string) func(string, string, bool) bool {
	return func(_, dep string, ours bool) bool {
		return ours && (dep == "mesh" || strings.HasPrefix(dep, "mesh/")) && !slices.Contains(except, dep)
	}
}

// rooms are the rooms the Node composes through their Configs, and what each
// must not import: none imports the mesh root.
var rooms = map[string][]forbid{
	"mesh/voters": {
		{gossipImport, "the voter set gets gossip's view from the node through its Config"},
		{meshBut(), "the voter set changes Raft's configuration only: it writes no replicated state and reads the node through its Config"},
	},
	"mesh/rtcsessions": {
		{raftImport, "the session store writes through the node's write path"},
		{gossipImport, "the session store knows no gossip"},
		{meshBut("mesh/state"), "the session store gets what it needs from the node through its Config"},
	},
	"mesh/upkeep": {
		{raftImport, "the leader's upkeep writes through the node's Config"},
		{gossipImport, "the leader's upkeep knows no gossip"},
		{meshRoot, "the leader's upkeep gets what it needs from the node through its Config"},
	},
	"mesh/members": {
		{gossipImport, "the members view gets gossip's events from the node, never memberlist's types"},
		{raftImport, "the members view is gossip's, not Raft's"},
		{meshRoot, "the members view gets what it needs from the node through its Config"},
	},
	"mesh/liblog": {
		{func(_, _ string, ours bool) bool { return ours }, "the libraries' log adapter imports nothing of ours"},
	},
}

// roomViolation says why pkg, a room of the Node, must not import imp, or
// "" when it may.
func roomViolation(pkg, imp, dep string, ours bool) string {
	for _, f := range rooms[pkg] {
		if f.bad(imp, dep, ours) {
			return f.why
		}
	}
	return ""
}

// isTelemetry reports whether pkg is the node's telemetry room: the
// documents it builds and the one way it asks peers.
func isTelemetry(pkg string) bool {
	return pkg == "mesh/telemetry" || pkg == "mesh/peers"
}

// isFanOut reports whether pkg is the fan-out room, which every protocol
// that serves players of a shared upstream may import.
func isFanOut(pkg string) bool {
	return pkg == "protocols/fanout" || strings.HasPrefix(pkg, "protocols/fanout/")
}

// protocolOf returns "protocols/rtmp" for "protocols/rtmp/chunk".
func protocolOf(pkg string) string {
	parts := strings.SplitN(pkg, "/", 3)
	if len(parts) < 2 {
		return pkg
	}
	return parts[0] + "/" + parts[1]
}

// TestModTidy: go.mod and go.sum are as `go mod tidy` leaves them, so every
// module we import directly is a direct requirement.
func TestModTidy(t *testing.T) {
	out, err := exec.Command("go", "mod", "tidy", "-diff").CombinedOutput()
	if err != nil {
		t.Fatalf("go mod tidy -diff: %v\n%s", err, out)
	}
}
