package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/protocols/webrtc/webrtctest"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// Attacks on the SRS API port (--api): it takes calls that can change an
// origin (DELETE of clients and streams, SRS's raw API, anything proxied
// with ?origin=) only with the mesh's token, or on loopback, or with
// --insecure said out loud; WebRTC signalling stays public, and so do the
// reads unless an origin's API has credentials.

// apiCall is one request an attacker sends to a node's API port.
type apiCall struct{ method, path, auth string }

// writeAttacks are calls that would change an origin if they reached it;
// some carry the origin's own credentials (user:password), as a client that
// knows them would send them.
func writeAttacks(originID, originAuth string) []apiCall {
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(originAuth))
	return []apiCall{
		{"POST", "/api/v1/raw?rpc=reload&origin=" + originID, ""},
		{"GET", "/api/v1/raw?rpc=reload&origin=" + originID, ""},
		{"GET", "/api/v1/raw?rpc=reload&origin=" + originID, basic},
		{"DELETE", "/api/v1/clients/12345", ""},
		{"DELETE", "/api/v1/clients/12345?origin=" + originID, "Bearer guessed"},
		{"DELETE", "/api/v1/streams/vid-1?origin=" + originID, ""},
		{"PUT", "/api/v1/vhosts/?origin=" + originID, ""},
		{"PATCH", "/api/v1/clients/12345", basic},
		{"GET", "/api/v1/vhosts/?origin=" + originID + "&token=guessed", ""},
	}
}

// callAPI sends c to the API port addr and returns the status and body.
func callAPI(t *testing.T, addr string, c apiCall) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, c.method, "http://"+addr+c.path, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	resp, err := e2eHTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(body)
}

// apiRecorder sits in front of an origin's API port and records every call
// below /api/ that reaches it.
type apiRecorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *apiRecorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// startAPIRecorder proxies a loopback port to target, recording the calls
// below /api/, and returns the port's address.
func startAPIRecorder(t *testing.T, target string) (*apiRecorder, string) {
	t.Helper()
	rec := &apiRecorder{}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	addr := newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			rec.mu.Lock()
			rec.calls = append(rec.calls, r.Method+" "+r.URL.RequestURI())
			rec.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	return rec, addr
}

// TestAttackAPIWritesWithoutToken runs a node as `srs-mesh serve` runs by
// default: no --token, --api on every interface. Every call that could
// change the origin is refused with a JSON 403 and never reaches it, while
// a WHIP publisher and a WHEP player on the same port keep streaming, the
// public reads answer, and the player can end its own session. A node
// started with --insecure says so and relays the same calls.
func TestAttackAPIWritesWithoutToken(t *testing.T) {
	origin, err := webrtctest.Start(webrtctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { origin.Close() })
	rec, front := startAPIRecorder(t, origin.API)
	originFlag := "id=rtc1,ip=127.0.0.1,api=" + portOf(front) + ",rtc=" + portOf(origin.RTC)
	everyInterface := func(i int, nodes []*harness.Node) []string {
		return []string{"--api", "0.0.0.0:" + portOf(nodes[i].APIAddr)}
	}
	c := startProtocolCluster(t, 1, everyInterface, "--origin", originFlag)
	c.waitOriginsHealthy(t, 1)
	nd := c.nodes[0]
	testkit.WaitFor(t, 10*time.Second, "the node says why API writes are refused", func() bool {
		return strings.Contains(nd.Logs(), "is not on loopback and --token is not set") && strings.Contains(nd.Logs(), "403")
	})

	api := rtcClientAPI(t)
	startRTCPublisher(t, api, "http://"+nd.APIAddr+"/rtc/v1/whip/?app=live&stream=cam", nd, nd)
	testkit.WaitFor(t, 20*time.Second, "the origin receives the published tracks", func() bool {
		return origin.Tracks("live", "cam") == 2
	})
	player := startRTCPlayer(t, api, "http://"+nd.APIAddr+"/rtc/v1/whep/?app=live&stream=cam", nd, nd)
	player.waitPackets(t, 20, "the WHEP player")

	for _, c := range writeAttacks("rtc1", "admin:s3cret") {
		code, body := callAPI(t, nd.APIAddr, c)
		if code != http.StatusForbidden || !strings.Contains(body, `"code":403`) || !strings.Contains(body, "token") {
			t.Errorf("%s %s (%q): %d %s, want a JSON 403", c.method, c.path, c.auth, code, body)
		}
	}
	if calls := rec.seen(); len(calls) != 0 {
		t.Fatalf("the origin was reached by refused calls: %v", calls)
	}

	// The legitimate clients next to the attack.
	before := player.video.Load()
	testkit.WaitFor(t, 10*time.Second, "the WHEP player still receives after the attack", func() bool {
		return player.video.Load() > before+20
	})
	for _, path := range []string{"/api/v1/versions", "/api/v1/summaries", "/api/v1/streams/"} {
		if code, body := callAPI(t, nd.APIAddr, apiCall{"GET", path, ""}); code != http.StatusOK {
			t.Errorf("public read GET %s: %d %s", path, code, body)
		}
	}
	for _, call := range rec.seen() {
		if !strings.HasPrefix(call, "GET /api/v1/summaries") && !strings.HasPrefix(call, "GET /api/v1/streams") {
			t.Errorf("a public read sent %q to the origin", call)
		}
	}
	rtcDelete(t, nd, player.location) // a WHEP player ends its own session
	testkit.WaitFor(t, 10*time.Second, "the origin ends the player's session", func() bool {
		return origin.Sessions() == 1
	})

	// --insecure, said out loud: the node warns and relays.
	open := startProtocolCluster(t, 1, everyInterface, "--origin", originFlag, "--insecure")
	testkit.WaitFor(t, 10*time.Second, "the insecure node warns", func() bool {
		return strings.Contains(open.nodes[0].Logs(), "INSECURE") && strings.Contains(open.nodes[0].Logs(), "--api")
	})
	open.waitOriginsHealthy(t, 1)
	callAPI(t, open.nodes[0].APIAddr, apiCall{"POST", "/api/v1/raw?rpc=reload&origin=rtc1", ""})
	if calls := rec.seen(); !strings.Contains(strings.Join(calls, "\n"), "POST /api/v1/raw?rpc=reload") {
		t.Fatalf("with --insecure the call did not reach the origin: %v", calls)
	}
}

// TestAttackAPIWithTokenAndOriginAuth runs a node with --token in front of
// a real SRS origin whose HTTP API requires Basic auth (http_api.auth),
// given to the node with --origin-api-auth-file. Anonymous writes, writes
// with a guessed token and writes carrying the origin's own credentials are
// refused (the client's Authorization is never forwarded), the publisher
// they aim at keeps publishing. Anonymous reads of what the origin keeps to
// its credential holders (clients, streams, summaries) are refused too,
// while a player keeps playing; the operator's reads with the token show
// the origin's clients (the node authenticates to it); the operator's call
// with the token kicks the client; and no credential appears in the node's
// log.
func TestAttackAPIWithTokenAndOriginAuth(t *testing.T) {
	const token = "mesh-api-token-1f7c"
	const originAuth = "admin:origin-pass-93ab"
	harness.Need(t, "ffmpeg")
	authFile := filepath.Join(t.TempDir(), "origin-auth")
	if err := os.WriteFile(authFile, []byte(originAuth+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startProtocolCluster(t, 1, nil, "--token", token, "--origin-api-auth-file", authFile)
	nd := c.nodes[0]
	srs := harness.StartSRS(t, harness.SRSOptions{ID: "srs-auth", APIAuth: originAuth,
		HeartbeatURL: "http://" + nd.SystemAPI + "/api/v1/srs/register/" + token})
	c.waitOriginsHealthy(t, 1)
	var st mesh.Status
	if err := nd.Status(&st); err != nil || len(st.Origins) != 1 {
		t.Fatalf("status: %v %+v", err, st.Origins)
	}
	originID := st.Origins[0].ID
	if code := httpStatus("http://" + srs.APIAddr + "/api/v1/clients/"); code != http.StatusUnauthorized {
		t.Fatalf("SRS answers an anonymous API call with %d; the test needs its http_api.auth", code)
	}

	keep := harness.PublishRTMP(t, nd.RTMPURL("live/keep"))
	kick := harness.PublishRTMP(t, nd.RTMPURL("live/kick"))
	type client struct {
		ID     string `json:"id"`
		Name   string `json:"name"`
		Type   string `json:"type"`
		Origin string `json:"origin"`
	}
	var kickID string
	testkit.WaitFor(t, 30*time.Second, "the operator's /api/v1/clients lists the SRS publishers (the node authenticates to SRS)", func() bool {
		var answer struct {
			Clients []client `json:"clients"`
		}
		code, body := callAPI(t, nd.APIAddr, apiCall{"GET", "/api/v1/clients", "Bearer " + token})
		if code != http.StatusOK || json.Unmarshal([]byte(body), &answer) != nil {
			return false
		}
		names := 0
		for _, cl := range answer.Clients {
			if cl.Type == "fmle-publish" && cl.Origin == originID && (cl.Name == "keep" || cl.Name == "kick") {
				names++
				if cl.Name == "kick" {
					kickID = cl.ID
				}
			}
		}
		return names == 2
	})

	player := harness.StartCopyPlayer(t, nd.RTMPURL("live/keep"))
	testkit.WaitFor(t, 30*time.Second, "the player of live/keep decodes frames", func() bool { return player.Frames() > 0 })

	// The origin keeps its reads to those with its credentials, and so does
	// the node: an anonymous read of what the origin protects (clients'
	// addresses and tcUrls, streams, summaries) is a JSON 401, whatever
	// credentials it carries but the mesh's token.
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(originAuth))
	for _, a := range []apiCall{
		{"GET", "/api/v1/clients", ""},
		{"GET", "/api/v1/clients/", ""},
		{"GET", "/api/v1/clients/?start=0&count=100", ""},
		{"GET", "/api/v1/clients/" + kickID, ""},
		{"GET", "/api/v1/clients/", basic},
		{"GET", "/api/v1/clients/", "Bearer " + token + "x"},
		{"GET", "/api/v1/clients/?token=guessed", ""},
		{"GET", "/api/v1/streams/", ""},
		{"GET", "/api/v1/summaries", ""},
		{"HEAD", "/api/v1/clients/", ""},
	} {
		code, body := callAPI(t, nd.APIAddr, a)
		if code != http.StatusUnauthorized || (a.method == "GET" && !strings.Contains(body, `"code":401`)) {
			t.Errorf("anonymous read %s %s (%q): %d %s, want a JSON 401", a.method, a.path, a.auth, code, body)
		}
		if strings.Contains(body, "tcUrl") || strings.Contains(body, "127.0.0.1") || strings.Contains(body, "keep") {
			t.Errorf("anonymous read %s %s: the answer shows what the origin protects: %s", a.method, a.path, body)
		}
	}
	if code, body := callAPI(t, nd.APIAddr, apiCall{"GET", "/api/v1/versions", ""}); code != http.StatusOK {
		t.Errorf("GET /api/v1/versions: %d %s", code, body)
	}
	if code, body := callAPI(t, nd.APIAddr, apiCall{"GET", "/api/v1/clients/?token=" + token, ""}); code != http.StatusOK || !strings.Contains(body, kickID) {
		t.Errorf("the operator's read with ?token=: %d %s", code, body)
	}

	attacks := append(writeAttacks(originID, originAuth),
		apiCall{"DELETE", "/api/v1/clients/" + kickID, ""},
		apiCall{"DELETE", "/api/v1/clients/" + kickID, basic},
		apiCall{"DELETE", "/api/v1/clients/" + kickID + "?origin=" + originID, basic},
		apiCall{"DELETE", "/api/v1/clients/" + kickID, "Bearer " + token + "x"},
		apiCall{"DELETE", "/api/v1/clients/" + kickID + "?token=" + token[:len(token)-1], ""},
	)
	for _, a := range attacks {
		code, body := callAPI(t, nd.APIAddr, a)
		if code != http.StatusUnauthorized || !strings.Contains(body, `"code":401`) {
			t.Errorf("%s %s: %d %s, want a JSON 401", a.method, a.path, code, body)
		}
	}
	if kick.Exited() || keep.Exited() {
		t.Fatalf("a publisher ended under the attack:\nkick: %s\nkeep: %s", kick.Output(), keep.Output())
	}
	played := player.Frames()
	testkit.WaitFor(t, 20*time.Second, "the player of live/keep keeps decoding after the attack", func() bool {
		return player.Frames() > played+25
	})
	if player.Exited() {
		t.Fatalf("the player ended under the attack: %s", player.Output())
	}
	harness.PlayUntil(t, nd.RTMPURL("live/keep"), time.Second, 5, 30*time.Second)

	// The operator, with the token, kicks the client on the origin.
	code, body := callAPI(t, nd.APIAddr, apiCall{"DELETE", "/api/v1/clients/" + kickID, "Bearer " + token})
	var answer struct {
		Code int `json:"code"`
	}
	json.Unmarshal([]byte(body), &answer)
	if code != http.StatusOK || answer.Code != 0 {
		t.Fatalf("DELETE with the token: %d %s", code, body)
	}
	kick.Wait(15 * time.Second)
	if !kick.Exited() {
		t.Fatal("the kicked publisher is still running")
	}
	if keep.Exited() {
		t.Fatalf("the other publisher ended too: %s", keep.Output())
	}
	harness.PlayUntil(t, nd.RTMPURL("live/keep"), time.Second, 5, 30*time.Second)

	for _, secret := range []string{token, "origin-pass-93ab", base64.StdEncoding.EncodeToString([]byte(originAuth))} {
		if strings.Contains(nd.Logs(), secret) {
			t.Errorf("the node's log holds a credential (%s...)", secret[:4])
		}
	}
}

// TestAttackOriginFlagMistakes starts serve with each mistyped --origin
// and SRS_MESH_ORIGIN: it refuses with one line that names the flag and
// the key, and never prints the credential.
func TestAttackOriginFlagMistakes(t *testing.T) {
	for _, tc := range []struct {
		name, value, names string
	}{
		{"two origins with one id", "id=o1,ip=127.0.0.1,rtmp=1935;id=o1,ip=127.0.0.2,rtmp=1935", "id=o1"},
		{"a key given twice", "id=o1,ip=127.0.0.1,ip=127.0.0.2,rtmp=1935", "ip="},
		{"no ip", "id=o1,rtmp=1935", "ip="},
		{"a token given twice", "id=o1,ip=127.0.0.1,api=1985,api-token=tok-secret-1,api-token=tok-secret-1", "api-token="},
		{"a password holding ';'", "id=o1,ip=127.0.0.1,api=1985,api-auth=admin:tok-secret-1;tok-secret-1", "--origin #2"},
		{"a token holding ','", "id=o1,ip=127.0.0.1,api=1985,api-token=tok-secret-1,tok-secret-1", "not key=value"},
		{"a password holding ',rtmp='", "id=o1,ip=127.0.0.1,api=1985,api-auth=admin:pw,rtmp=tok-secret-1", "rtmp="},
	} {
		for _, form := range []string{"flag", "env"} {
			t.Run(tc.name+"/"+form, func(t *testing.T) {
				args := []string{"serve", "--node-id", "typo", "--data-dir", t.TempDir(), "--rtmp", "", "--http", "",
					"--api", "", "--rtc", "", "--srt", "", "--system-api", "127.0.0.1:0"}
				env := os.Environ()
				if form == "flag" {
					args = append(args, "--origin", tc.value)
				} else {
					env = append(env, "SRS_MESH_ORIGIN="+tc.value)
				}
				cmd := exec.Command(binary, args...)
				cmd.Env = env
				out, err := cmd.CombinedOutput()
				if err == nil {
					t.Fatalf("started:\n%s", out)
				}
				msg := strings.TrimSpace(string(out))
				if !strings.Contains(msg, "--origin") || !strings.Contains(msg, tc.names) || strings.Count(msg, "\n") > 0 {
					t.Errorf("want one line naming --origin and %s, got:\n%s", tc.names, msg)
				}
				if strings.Contains(msg, "tok-secret-1") || strings.Contains(msg, "admin") {
					t.Errorf("the error prints the credential: %s", msg)
				}
			})
		}
	}
}
