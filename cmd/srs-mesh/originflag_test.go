package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// originsOf parses args and env with the serve command's flags and returns
// the --origin values.
func originsOf(t *testing.T, args []string, env map[string]string) originList {
	t.Helper()
	cmd := newServeCmd()
	if err := cmd.Flags().Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(cmd.Flags(), func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	return *cmd.Flags().Lookup("origin").Value.(*originList)
}

// One value with two origins separated by ';' gives two origins, on the
// command line as in SRS_MESH_ORIGIN; repeating the flag does too.
func TestOriginFlagAndEnvAgree(t *testing.T) {
	const two = "id=o1,ip=10.0.0.5,rtmp=1935; id=o2,ip=10.0.0.6,rtmp=1935;"
	want := originList{"id=o1,ip=10.0.0.5,rtmp=1935", "id=o2,ip=10.0.0.6,rtmp=1935"}
	for name, got := range map[string]originList{
		"flag":      originsOf(t, []string{"--origin", two}, nil),
		"env":       originsOf(t, nil, map[string]string{"SRS_MESH_ORIGIN": two}),
		"repeated":  originsOf(t, []string{"--origin", want[0], "--origin", want[1]}, nil),
		"flag wins": originsOf(t, []string{"--origin", two}, map[string]string{"SRS_MESH_ORIGIN": "id=o3,ip=10.0.0.7,rtmp=1"}),
	} {
		if !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
		orgs, _, err := parseOrigins(serveOptions{origins: got})
		if err != nil || len(orgs) != 2 || orgs[0].ID != "o1" || orgs[1].ID != "o2" {
			t.Errorf("%s: parsed %+v, %v", name, orgs, err)
		}
	}
}

// Every mistake is a one-line error naming --origin and the key, and never
// the credential.
func TestOriginMistakes(t *testing.T) {
	dir := t.TempDir()
	noColon := filepath.Join(dir, "auth")
	os.WriteFile(noColon, []byte("very-secret-value\n"), 0o600)
	for _, tc := range []struct {
		name   string
		values []string
		names  string
	}{
		{"one id twice in one value", []string{"id=o1,ip=10.0.0.5,rtmp=1935;id=o1,ip=10.0.0.6,rtmp=1935"}, "id=o1"},
		{"one id in two flags", []string{"id=o1,ip=10.0.0.5,rtmp=1935", "name=o1,ip=10.0.0.6,rtmp=1935"}, "id=o1"},
		{"no ip", []string{"id=o1,rtmp=1935"}, "ip="},
		{"ip twice", []string{"id=o1,ip=10.0.0.5,rtmp=1935,ip=10.0.0.6"}, "ip="},
		{"port twice", []string{"id=o1,ip=10.0.0.5,rtmp=1935,rtmp=1936"}, "rtmp="},
		{"unknown key", []string{"id=o1,ip=10.0.0.5,rtmp=1935,apitoken=very-secret-value"}, "apitoken"},
		{"token twice", []string{"id=o1,ip=10.0.0.5,api=1985,api-token=very-secret-value,api-token=very-secret-value"}, "api-token="},
		{"token and auth", []string{"id=o1,ip=10.0.0.5,api=1985,api-token=very-secret-value,api-auth=u:very-secret-value"}, "api-auth="},
		{"auth without a password", []string{"id=o1,ip=10.0.0.5,api=1985,api-auth=very-secret-value"}, "api-auth="},
		{"auth file without a password", []string{"id=o1,ip=10.0.0.5,api=1985,api-auth-file=" + noColon}, "api-auth-file="},
		{"token file missing", []string{"id=o1,ip=10.0.0.5,api=1985,api-token-file=" + filepath.Join(dir, "none")}, "api-token-file="},
		{"empty token", []string{"id=o1,ip=10.0.0.5,api=1985,api-token="}, "api-token="},
	} {
		var l originList
		for _, v := range tc.values {
			l.Set(v)
		}
		_, _, err := parseOrigins(serveOptions{origins: l})
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "--origin ") || !strings.Contains(msg, tc.names) || strings.Contains(msg, "\n") {
			t.Errorf("%s: %q, want one line naming --origin and %s", tc.name, msg, tc.names)
		}
		if strings.Contains(msg, "very-secret-value") {
			t.Errorf("%s: the error shows the credential: %q", tc.name, msg)
		}
	}
}

// An origin's own credentials go to it; the files of
// --origin-api-token-file or --origin-api-auth-file go to every other
// origin, registered ones included.
func TestOriginCredentialsFromFlags(t *testing.T) {
	dir := t.TempDir()
	tokenFile, authFile := filepath.Join(dir, "token"), filepath.Join(dir, "auth")
	os.WriteFile(tokenFile, []byte("file-token\r\n"), 0o600)
	os.WriteFile(authFile, []byte("admin:pa:ss\n"), 0o600)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:pa:ss"))
	var l originList
	l.Set("id=o1,ip=10.0.0.5,api=1985,api-token=t1;id=o2,ip=10.0.0.6,api=1985,api-auth-file=" + authFile + ";id=o3,ip=10.0.0.7,api=1985")
	_, creds, err := parseOrigins(serveOptions{origins: l, originTokenFile: tokenFile})
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"o1": "Bearer t1", "o2": basic, "o3": "Bearer file-token", "registered": "Bearer file-token"} {
		if got := creds.get(id); got != want {
			t.Errorf("%s: %q, want %q", id, got, want)
		}
	}
	_, creds, err = parseOrigins(serveOptions{originAuthFile: authFile})
	if err != nil || creds.get("any") != basic {
		t.Errorf("--origin-api-auth-file: %q, %v", creds.get("any"), err)
	}
	if _, creds, _ := parseOrigins(serveOptions{}); creds.get("any") != "" {
		t.Errorf("no credentials configured, yet %q", creds.get("any"))
	}
	if _, _, err := parseOrigins(serveOptions{originAuthFile: authFile, originTokenFile: tokenFile}); err == nil {
		t.Error("both default credential files accepted")
	}
	if s := l.String(); strings.Contains(s, "t1") || !strings.Contains(s, "api-token=<redacted>") {
		t.Errorf("the flag prints as %q", s)
	}
}

// The SRS API port takes calls that can change an origin from anyone only
// on loopback or with --insecure; with a token, they need it.
func TestAPIWrites(t *testing.T) {
	for _, tc := range []struct {
		o              serveOptions
		open, insecure bool
		note           string
	}{
		{serveOptions{apiAddr: ":1985"}, false, false, "--api :1985 is not on loopback and --token is not set"},
		{serveOptions{apiAddr: "[::]:1985"}, false, false, "refused with 403"},
		{serveOptions{apiAddr: "10.0.0.5:1985"}, false, false, "--token"},
		{serveOptions{apiAddr: "127.0.0.1:1985"}, true, false, ""},
		{serveOptions{apiAddr: "[::1]:1985"}, true, false, ""},
		{serveOptions{apiAddr: "localhost:1985"}, true, false, ""},
		{serveOptions{apiAddr: ":1985", token: "t"}, false, false, ""},
		{serveOptions{apiAddr: ":1985", insecure: true}, true, true, "anyone"},
		{serveOptions{apiAddr: ":1985", insecure: true, token: "t"}, false, false, ""},
		{serveOptions{apiAddr: ""}, false, false, ""},
	} {
		open, note, insecure := apiWrites(tc.o)
		if open != tc.open || insecure != tc.insecure || !strings.Contains(note, tc.note) || (tc.note == "") != (note == "") {
			t.Errorf("%+v: open %v, note %q, insecure %v", tc.o, open, note, insecure)
		}
	}
}
