package harness

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// WebPlayer names a stream for one web player in headless Chromium.
type WebPlayer struct {
	Name string `json:"name"`
	// Kind is "hls" (hls.js), "dash" (dash.js), "flv" (mpegts.js) or
	// "whep" (the browser's RTCPeerConnection).
	Kind string `json:"kind"`
	Src  string `json:"src"`
}

// WebReport is what one web player saw.
type WebReport struct {
	Name   string   `json:"name"`
	Kind   string   `json:"kind"`
	Src    string   `json:"src"`
	Fatal  []string `json:"fatal"`
	Errors []string `json:"errors"`
	Events []string `json:"events"`
	// Samples are [ms since start, video currentTime s, decoded frames],
	// every 500 ms.
	Samples  [][3]float64 `json:"samples"`
	Location string       `json:"location"`
}

// Advance is how far currentTime moved from the first sample where it moved
// at all to the last sample.
func (r WebReport) Advance() time.Duration {
	first, last := -1.0, 0.0
	for i, s := range r.Samples {
		if first < 0 && i > 0 && s[1] > r.Samples[i-1][1] {
			first = r.Samples[i-1][1]
		}
		last = s[1]
	}
	if first < 0 {
		return 0
	}
	return time.Duration((last - first) * float64(time.Second))
}

// Frames is the number of video frames decoded by the end.
func (r WebReport) Frames() int {
	if len(r.Samples) == 0 {
		return 0
	}
	return int(r.Samples[len(r.Samples)-1][2])
}

// LongestStall is the longest wall-clock time, after playback first
// advanced, during which currentTime did not move.
func (r WebReport) LongestStall() time.Duration {
	var longest, since float64 = 0, -1
	for i := 1; i < len(r.Samples); i++ {
		cur, prev := r.Samples[i], r.Samples[i-1]
		if cur[1] > prev[1] {
			since = cur[0]
			continue
		}
		if since >= 0 && cur[0]-since > longest {
			longest = cur[0] - since
		}
	}
	return time.Duration(longest * float64(time.Millisecond))
}

// webDir is test/web, where players.html and the players' npm packages
// live.
func webDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "web")
}

// NeedWebPlayers skips the test unless Chromium and the web players
// (installed by `npm ci --prefix test/web`) are present.
func NeedWebPlayers(t testing.TB) {
	t.Helper()
	ChromiumBin(t)
	for _, f := range []string{"hls.js/dist/hls.min.js", "dashjs/dist/dash.all.min.js", "mpegts.js/dist/mpegts.js"} {
		if _, err := os.Stat(filepath.Join(webDir(), "node_modules", f)); err != nil {
			Missingf(t, "web players", "not installed (npm ci --prefix test/web): %v", err)
		}
	}
}

// PlayInBrowser plays every stream at once, each in its own <video>, in one
// headless Chromium page served from its own origin on loopback, so that
// every request the players make is cross-origin. Each player is watched
// for run after it starts playing, or gives up after limit. It returns one
// report per player, in order.
func PlayInBrowser(t testing.TB, players []WebPlayer, run, limit time.Duration) []WebReport {
	t.Helper()
	return playInBrowser(t, players, run, limit, nil, nil)
}

// PlayInBrowserHTTPS is PlayInBrowser with the page served over HTTPS with
// pageCert, so that the players run under the browser's mixed-content rules
// (an https page may fetch no http:// media). Chromium trusts the keys of
// pageCert and of the trust certificates (the servers the players reach)
// by their SPKI hashes, as a browser trusts a local CA it was given.
func PlayInBrowserHTTPS(t testing.TB, players []WebPlayer, run, limit time.Duration, pageCert tls.Certificate, trust ...*x509.Certificate) []WebReport {
	t.Helper()
	var pins []string
	for _, c := range append([]*x509.Certificate{pageCert.Leaf}, trust...) {
		sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		pins = append(pins, base64.StdEncoding.EncodeToString(sum[:]))
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pageCert}}
	return playInBrowser(t, players, run, limit, cfg, []string{"--ignore-certificate-errors-spki-list=" + strings.Join(pins, ",")})
}

func playInBrowser(t testing.TB, players []WebPlayer, run, limit time.Duration, pageTLS *tls.Config, flags []string) []WebReport {
	t.Helper()
	NeedWebPlayers(t)
	bin := ChromiumBin(t)
	spec, err := json.Marshal(players)
	if err != nil {
		t.Fatal(err)
	}
	reports := make(chan []WebReport, 1)
	mux := http.NewServeMux()
	mux.Handle("GET /", http.FileServer(http.Dir(webDir())))
	mux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
		var rep []WebReport
		if err == nil {
			err = json.Unmarshal(b, &rep)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case reports <- rep:
		default:
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	scheme := "http"
	if pageTLS != nil {
		scheme, ln = "https", tls.NewListener(ln, pageTLS)
	}
	go srv.Serve(ln)
	defer srv.Close()

	q := url.Values{
		"players": {string(spec)},
		"run":     {formatSeconds(run)},
		"limit":   {formatSeconds(limit)},
	}
	page := scheme + "://" + ln.Addr().String() + "/players.html?" + q.Encode()
	ctx, cancel := context.WithTimeout(context.Background(), limit+30*time.Second)
	defer cancel()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
		"--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection",
		"--disable-features=WebRtcHideLocalIpsWithMdns", "--mute-audio",
		"--user-data-dir=" + t.TempDir()}, flags...)
	cmd := exec.CommandContext(ctx, bin, append(args, page)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out := newLockedBuffer()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cancel()
		<-exited
	}()
	select {
	case rep := <-reports:
		return rep
	case err := <-exited:
		t.Fatalf("chromium exited before the players reported: %v\n%s", err, tail(out.String(), 40))
	case <-ctx.Done():
		t.Fatalf("no report from the players page within %v\n%s", limit+30*time.Second, tail(out.String(), 40))
	}
	return nil
}

func formatSeconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

// CheckWebPlayback fails the test unless the report shows playback that
// advanced by at least minAdvance, decoded frames, raised no fatal error and
// never stalled for longer than maxStall.
func CheckWebPlayback(t testing.TB, r WebReport, minAdvance, maxStall time.Duration) {
	t.Helper()
	t.Logf("%s (%s %s): currentTime +%.1fs, %d frames, longest stall %v, %d non-fatal errors %q, events %q",
		r.Name, r.Kind, r.Src, r.Advance().Seconds(), r.Frames(), r.LongestStall(), len(r.Errors), r.Errors, r.Events)
	switch {
	case len(r.Fatal) > 0:
		t.Errorf("%s: fatal errors: %q", r.Name, r.Fatal)
	case r.Advance() < minAdvance:
		t.Errorf("%s: currentTime advanced %v, want at least %v; samples %v", r.Name, r.Advance(), minAdvance, r.Samples)
	case r.Frames() <= 0:
		t.Errorf("%s: no decoded frames", r.Name)
	case r.LongestStall() > maxStall:
		t.Errorf("%s: playback stalled for %v (at most %v allowed); samples %v", r.Name, r.LongestStall(), maxStall, r.Samples)
	}
}
