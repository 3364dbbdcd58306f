package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// serveFlags parses args as serve's flags, then the environment env, then
// the --config file, as serve does before it runs.
func serveFlags(t *testing.T, env map[string]string, args ...string) (*pflag.FlagSet, error) {
	t.Helper()
	serve, _, err := newRootCmd().Find([]string{"serve"})
	if err != nil {
		t.Fatal(err)
	}
	fs := serve.Flags()
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	path := fs.Lookup("config").Value.String()
	return fs, applyConfigFile(fs, path)
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "srs-mesh.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigFile(t *testing.T) {
	path := writeConfig(t, `
node-id: n1
bootstrap-expect: 3
http: ":8080"
zone: from-file
fanout: false
drain-timeout: 45s
cache-size: 1GiB
join:
  - srs-mesh-0.srs-mesh:7946
  - srs-mesh-1.srs-mesh:7946
origin:
  - {id: o1, ip: 10.0.0.5, rtmp: 1935, http: 8080}
  - id=o2,ip=10.0.0.6,rtmp=1935
`)
	fs, err := serveFlags(t, map[string]string{"SRS_MESH_ZONE": "from-env"}, "--config", path, "--http", ":9090")
	if err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{
		"node-id": "n1", "bootstrap-expect": "3", "fanout": "false", "drain-timeout": "45s", "cache-size": "1GiB",
		"http":   ":9090",    // the command line wins
		"zone":   "from-env", // and the environment
		"join":   "[srs-mesh-0.srs-mesh:7946,srs-mesh-1.srs-mesh:7946]",
		"origin": "[http=8080,id=o1,ip=10.0.0.5,rtmp=1935;id=o2,ip=10.0.0.6,rtmp=1935]",
	} {
		if got := fs.Lookup(flag).Value.String(); got != want {
			t.Errorf("--%s = %q, want %q", flag, got, want)
		}
	}
}

func TestConfigFileErrors(t *testing.T) {
	for text, want := range map[string]string{
		"bootstrap-expekt: 3\n":    `unknown key "bootstrap-expekt"`,
		"bootstrap-expect: many\n": "bootstrap-expect:",
		"config: other.yaml\n":     `unknown key "config"`,
		"- a\n- b\n":               "want a map of flag names",
		"join: [[a]]\n":            "a list inside a list",
		"http: [\n":                "--config",
	} {
		_, err := serveFlags(t, nil, "--config", writeConfig(t, text))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", text, err, want)
		}
	}
	if _, err := serveFlags(t, nil, "--config", writeConfig(t, "")); err != nil {
		t.Errorf("an empty file: %v", err)
	}
	if _, err := serveFlags(t, nil, "--config", filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("a missing file is no error")
	}
	if _, err := serveFlags(t, nil, "--config", writeConfig(t, strings.Repeat("#", maxConfigFile+1))); err == nil ||
		!strings.Contains(err.Error(), "larger than") {
		t.Errorf("an oversized file: %v", err)
	}
}

// TestReadmeConfigExample loads the README's complete example, which must
// stay a file serve accepts.
func TestReadmeConfigExample(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "complete example, for the first of three hosts:\n\n```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("the README has no complete --config example")
	}
	fs, err := serveFlags(t, nil, "--config", writeConfig(t, example))
	if err != nil {
		t.Fatal(err)
	}
	if got := fs.Lookup("origin").Value.String(); !strings.Contains(got, "id=origin-2") {
		t.Errorf("origins of the example: %s", got)
	}
}
