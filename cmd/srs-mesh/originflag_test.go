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
	want := []string{"id=o1,ip=10.0.0.5,rtmp=1935", "id=o2,ip=10.0.0.6,rtmp=1935"}
	for name, got := range map[string]originList{
		"flag":      originsOf(t, []string{"--origin", two}, nil),
		"env":       originsOf(t, nil, map[string]string{"SRS_MESH_ORIGIN": two}),
		"repeated":  originsOf(t, []string{"--origin", want[0], "--origin", want[1]}, nil),
		"flag wins": originsOf(t, []string{"--origin", two}, map[string]string{"SRS_MESH_ORIGIN": "id=o3,ip=10.0.0.7,rtmp=1"}),
	} {
		if texts := textsOf(got); !slices.Equal(texts, want) {
			t.Errorf("%s: %q, want %q", name, texts, want)
		}
		orgs, _, err := parseOrigins(serveOptions{origins: got})
		if err != nil || len(orgs) != 2 || orgs[0].ID != "o1" || orgs[1].ID != "o2" {
			t.Errorf("%s: parsed %+v, %v", name, orgs, err)
		}
	}
}

// textsOf returns the origins of l as given.
func textsOf(l originList) []string {
	var out []string
	for _, s := range l {
		out = append(out, s.text)
	}
	return out
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
		{"unknown key in a value with a credential", []string{"id=o1,ip=10.0.0.5,api=1985,api-auth=u:very-secret-value,tmp=1"}, "unknown key"},
		{"unknown key before a credential", []string{"id=o1,ip=10.0.0.5,rtmpp=1935,api-auth=u:very-secret-value"}, `unknown key "rtmpp"`},
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

// A credential may hold ',' or ';', which split it into pieces, even
// origins, of their own: once a value of --origin holds a credential key
// (or an unknown key, which may be a mistyped one), its errors and the
// flag's String name keys alone, never a value or a piece.
func TestOriginCredentialPiecesNeverShown(t *testing.T) {
	for _, tc := range []struct {
		value, names string
	}{
		{"id=o1,ip=10.0.0.5,api=1985,api-token=s3cr3t,PART2", "not key=value"},
		{"id=o1,ip=10.0.0.5,api=1985,api-auth=admin:pa;SECRETTAIL", "--origin #2"},
		{"id=o1,ip=10.0.0.5,api=1985,api-auth=admin:pa;SECRETTAIL=x", "unknown key"},
		{"id=o1,ip=10.0.0.5,api=1985,api-auth=admin:pa;id=o2,SECRETTAIL", "not key=value"},
		{"id=o1,ip=10.0.0.5,api=1985,api-auth=admin:pa,ss=word", "unknown key"},
		{"id=o1,ip=10.0.0.5,api=1985,api-auth=admin:pa,rtmp=HUNTER2", "rtmp="},
		{"id=o1,ip=10.0.0.5,api=1985,api-auth=admin:pa,weight=HUNTER2", "weight="},
		{"id=o1,ip=10.0.0.5,api=1985,api-auth=admin:pa,max_streams=987654321", "max_streams="},
		{"id=o1,ip=10.0.0.5,api=1985,api-auth=admin:pa,ip=HUNTER2", "ip="},
		{"id=o1,api=1985,api-auth=admin:pa,ip=HUNTER2!", "ip="},
		{"id=HUNTER2,api=1985,api-auth=admin:pa", "ip="},
		{"id=o1,ip=10.0.0.5,api=1985,Api-Token = s3cr3t,PART2", "not key=value"},
		{"id=o1,ip=10.0.0.5,api=1985,apitoken=s3cr3t;PART2", `unknown key "apitoken"`},
		{"id=o1,ip=10.0.0.5,api=1985,api-token=s3cr3t;id=o1,ip=10.0.0.6,rtmp=1", "id= is given to another origin"},
	} {
		var l originList
		l.Set(tc.value)
		_, _, err := parseOrigins(serveOptions{origins: l})
		if err == nil {
			t.Errorf("%q accepted", tc.value)
			continue
		}
		msg, str := err.Error(), l.String()
		if !strings.HasPrefix(msg, "--origin ") || !strings.Contains(msg, tc.names) || strings.Contains(msg, "\n") {
			t.Errorf("%q: %q, want one line naming --origin and %s", tc.value, msg, tc.names)
		}
		for _, secret := range []string{"s3cr3t", "PART2", "SECRETTAIL", "secrettail", "pa", "word", "HUNTER2", "hunter2", "987654321", "admin"} {
			if strings.Contains(strings.ReplaceAll(msg, "api-", ""), secret) {
				t.Errorf("%q: the error shows %q: %q", tc.value, secret, msg)
			}
			if strings.Contains(strings.ReplaceAll(str, "api-", ""), secret) {
				t.Errorf("%q: String() shows %q: %q", tc.value, secret, str)
			}
		}
	}
	// A value without a credential is shown as given.
	var l originList
	l.Set("id=o1,ip=10.0.0.5,rtmp=1935,junk")
	if _, _, err := parseOrigins(serveOptions{origins: l}); err == nil || !strings.Contains(err.Error(), `"junk" is not key=value`) {
		t.Errorf("no credential: %v", err)
	}
	if s := l.String(); s != "[id=o1,ip=10.0.0.5,rtmp=1935,junk]" {
		t.Errorf("no credential: String() %q", s)
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
	if !creds.configured() {
		t.Error("credentials configured, yet not reported")
	}
	if _, creds, _ := parseOrigins(serveOptions{origins: originList{{text: "id=o1,ip=10.0.0.5,rtmp=1"}}}); creds.configured() {
		t.Error("no credentials, yet reported")
	}
}

// The SRS API port takes calls that can change an origin from anyone only
// on loopback or with --insecure; with a token, they need it. With
// credentials for an origin's API, the reads that ask origins follow the
// same rule, and the note at start says so.
func TestAPIWrites(t *testing.T) {
	for _, tc := range []struct {
		o              serveOptions
		reads          bool
		open, insecure bool
		note           string
	}{
		{serveOptions{apiAddr: ":1985"}, false, false, false, "--api :1985 is not on loopback and --token is not set"},
		{serveOptions{apiAddr: "[::]:1985"}, false, false, false, "refused with 403"},
		{serveOptions{apiAddr: "10.0.0.5:1985"}, false, false, false, "--token"},
		{serveOptions{apiAddr: "127.0.0.1:1985"}, false, true, false, ""},
		{serveOptions{apiAddr: "[::1]:1985"}, false, true, false, ""},
		{serveOptions{apiAddr: "localhost:1985"}, false, true, false, ""},
		{serveOptions{apiAddr: ":1985", token: "t"}, false, false, false, ""},
		{serveOptions{apiAddr: ":1985", insecure: true}, false, true, true, "anyone"},
		{serveOptions{apiAddr: ":1985", insecure: true, token: "t"}, false, false, false, ""},
		{serveOptions{apiAddr: ""}, false, false, false, ""},
		{serveOptions{apiAddr: ":1985"}, true, false, false, "reads that ask origins (clients, streams, summaries)"},
		{serveOptions{apiAddr: "127.0.0.1:1985"}, true, true, false, ""},
		{serveOptions{apiAddr: ":1985", token: "t"}, true, false, false, "reads that ask origins (clients, streams, summaries) need --token"},
		{serveOptions{apiAddr: ":1985", insecure: true}, true, true, true, "read what origins with API credentials keep private"},
		{serveOptions{apiAddr: ""}, true, false, false, ""},
	} {
		open, note, insecure := apiWrites(tc.o, tc.reads)
		if open != tc.open || insecure != tc.insecure || !strings.Contains(note, tc.note) || (tc.note == "") != (note == "") {
			t.Errorf("%+v, private reads %v: open %v, note %q, insecure %v", tc.o, tc.reads, open, note, insecure)
		}
	}
}
