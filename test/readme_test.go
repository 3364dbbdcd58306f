package e2e

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/mesh"
	"github.com/srs-mesh/srs-mesh/mesh/events"
	"github.com/srs-mesh/srs-mesh/test/harness"
	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// readmeBlock returns the fenced code block that follows the marker
// "<!-- quickstart:NAME -->" in README.md.
func readmeBlock(t *testing.T, readme, name string) string {
	t.Helper()
	return fencedAfter(t, readme, "<!-- quickstart:"+name+" -->")
}

// demoLayout maps the ports the README names (the demo's defaults) to the
// ones "srs-mesh demo --base-port base" uses: node i's RTMP 193i, HTTP 808i
// and system API 1202i, and the origin's RTMP and HTTP.
func demoLayout(base int) *strings.Replacer {
	var pairs []string
	for i := 1; i <= 3; i++ {
		b := base + 10*(i-1)
		pairs = append(pairs,
			fmt.Sprintf("127.0.0.1:%d", 1930+i), fmt.Sprintf("127.0.0.1:%d", b),
			fmt.Sprintf("127.0.0.1:%d", 8080+i), fmt.Sprintf("127.0.0.1:%d", b+1),
			fmt.Sprintf("127.0.0.1:%d", 12020+i), fmt.Sprintf("127.0.0.1:%d", b+2))
	}
	return strings.NewReplacer(pairs...)
}

// freeRange returns a base port b such that b..b+39 are free on loopback.
func freeRange(t *testing.T) int {
	t.Helper()
	for range 50 {
		base := 20000 + 40*rand.IntN(500)
		free := true
		for p := base; p < base+40 && free; p++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				free = false
				continue
			}
			ln.Close()
		}
		if free {
			return base
		}
	}
	t.Fatal("no free range of 40 ports")
	return 0
}

// TestReadmeQuickStart follows the README's quick start on loopback: the
// packages it installs are the ones the demo needs, the demo command starts
// three nodes and an nginx-rtmp origin, the publish command (run as written)
// reaches node 1, and the stream plays through node 3 over RTMP and HLS. The
// only change is the demo's ports (--base-port), so that the test does not
// collide with anything else on the machine. With a player attached, the
// origin that holds the stream is killed and then a node exits; the player
// plays on and so does the demo. Ctrl-C then stops everything the demo
// started, keeping the logs. The SRS block names the environment variables SRS reads
// (checked against SRS's source) and the demo's registration URL.
func TestReadmeQuickStart(t *testing.T) {
	harness.Need(t, "ffmpeg", "nginx")
	if _, err := os.Stat(harness.NginxModule); err != nil {
		harness.Missingf(t, "libnginx-mod-rtmp", "nginx rtmp module not installed (%s)", harness.NginxModule)
	}
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)

	// The first two commands stay at the top: a single node, the tests.
	top := readme[:strings.Index(readme, "## ")]
	if !strings.Contains(top, "go run ./cmd/srs-mesh serve") || !strings.Contains(top, "go test -count=1") {
		t.Errorf("the README no longer starts with the single node and the test command")
	}

	install := readmeBlock(t, readme, "install")
	for _, pkg := range []string{"ffmpeg", "nginx", "libnginx-mod-rtmp", "git", "curl"} {
		if !slices.Contains(strings.Fields(install), pkg) {
			t.Errorf("the install block does not install %s", pkg)
		}
	}
	// The Go it installs builds this module.
	goMod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(goMod)
	got := regexp.MustCompile(`go\.dev/dl/go(\S+)\.linux-amd64\.tar\.gz`).FindStringSubmatch(install)
	if want == nil || got == nil || versionLess(got[1], string(want[1])) {
		t.Errorf("the install block's Go (%v) is older than go.mod's (%s)", got, want)
	}
	if demo := strings.TrimSpace(readmeBlock(t, readme, "demo")); demo != "go run ./cmd/srs-mesh demo" {
		t.Fatalf("demo block is %q; update this test", demo)
	}
	play := strings.Split(strings.TrimSpace(readmeBlock(t, readme, "play")), "\n")
	if len(play) != 2 || !strings.HasPrefix(play[0], "ffmpeg ") || !strings.HasSuffix(play[0], " &") || !strings.HasPrefix(play[1], "ffplay ") {
		t.Fatalf("play block changed (want an ffmpeg publish in the background, then ffplay): %q", play)
	}

	base := freeRange(t)
	layout := demoLayout(base)
	demo := harness.Start(t, binary, "demo", "--base-port", fmt.Sprint(base))
	stopped := false
	t.Cleanup(func() { // before harness's kill: the demo stops what it started
		if !stopped {
			demo.Cmd.Process.Signal(syscall.SIGINT)
			demo.Wait(30 * time.Second)
		}
		if t.Failed() {
			t.Logf("demo output:\n%s", demo.Output())
		}
	})
	testkit.WaitFor(t, 90*time.Second, "the demo prints its URLs", func() bool {
		return strings.Contains(demo.Output(), "Press Ctrl-C") || demo.Exited()
	})
	if demo.Exited() {
		t.Fatalf("demo exited:\n%s", demo.Output())
	}

	// A normal start logs no warning, and each node says "node started"
	// once.
	logDir := regexp.MustCompile(`logs in (\S+)\)`).FindStringSubmatch(demo.Output())
	if logDir == nil {
		t.Fatalf("the demo does not say where its logs are:\n%s", demo.Output())
	}
	for i := 1; i <= 3; i++ {
		b, err := os.ReadFile(filepath.Join(logDir[1], fmt.Sprintf("n%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		log := string(b)
		for _, bad := range []string{"level=WARN", "level=ERROR", "err=<nil>", "mesh: mesh:", `\n\t`} {
			if strings.Contains(log, bad) {
				t.Errorf("node n%d's start logs %q:\n%s", i, bad, log)
			}
		}
		if n := strings.Count(log, `msg="node started"`); n != 1 {
			t.Errorf("node n%d logs \"node started\" %d times:\n%s", i, n, log)
		}
	}

	// The README's commands, with the demo's ports.
	publish := strings.Fields(strings.TrimSuffix(layout.Replace(play[0]), " &"))
	playURL := strings.Fields(layout.Replace(play[1]))[1]
	for _, u := range []string{publish[len(publish)-1], playURL} {
		if !strings.Contains(demo.Output(), u) {
			t.Errorf("the demo does not print %s, which the README shows", u)
		}
	}
	harness.Start(t, publish[0], publish[1:]...)
	res := harness.PlayUntil(t, playURL, 3*time.Second, 30, 60*time.Second)
	t.Logf("played %d frames through node 3 over RTMP", res.VideoFrames)
	hls := regexp.MustCompile(`ffplay (http://127\.0\.0\.1:8083/live/demo\.m3u8)`).FindStringSubmatch(readme)
	if hls == nil {
		t.Fatal("the README shows no HLS URL through node 3")
	}
	res = harness.PlayUntil(t, layout.Replace(hls[1]), 3*time.Second, 30, 60*time.Second)
	t.Logf("played %d frames through node 3 over HLS", res.VideoFrames)

	// The status command and the events the README points to.
	status := layout.Replace("127.0.0.1:12021")
	out, err := exec.Command(binary, "status", "--addr", status).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "MEMBERS (3)") || !strings.Contains(string(out), "EVENTS") ||
		!strings.Contains(string(out), "__defaultVhost__/live/demo") {
		t.Errorf("srs-mesh status --addr %s: %v\n%s", status, err, out)
	}
	var ev mesh.Events
	if err := harness.GetJSON("http://"+status+"/mesh/v1/events", &ev); err != nil ||
		!slices.ContainsFunc(ev.Events, func(e events.Event) bool { return e.Kind == events.Leader }) {
		t.Errorf("events of the demo mesh: %v %+v", err, ev)
	}

	// The SRS origin: environment variables SRS reads, pointed at node 1.
	srs := readmeBlock(t, readme, "srs")
	known := map[string]bool{ // trunk/src/app/srs_app_config.cpp, srs_app_heartbeat.cpp
		"SRS_DEVICE_IP": true, "SRS_HEARTBEAT_ENABLED": true, "SRS_HEARTBEAT_INTERVAL": true, "SRS_HEARTBEAT_URL": true,
		"SRS_HEARTBEAT_DEVICE_ID": true, "SRS_HEARTBEAT_SUMMARIES": true, "SRS_HEARTBEAT_PORTS": true,
		"CANDIDATE": true, // trunk/conf/docker.conf, the image's configuration: candidate $CANDIDATE;
	}
	for _, m := range regexp.MustCompile(`-e ([A-Z_]+)=`).FindAllStringSubmatch(srs, -1) {
		if !known[m[1]] {
			t.Errorf("the SRS block sets %s, which SRS does not read", m[1])
		}
	}
	if !strings.Contains(srs, "SRS_HEARTBEAT_URL=http://127.0.0.1:12021/api/v1/srs/register") || !strings.Contains(srs, "SRS_HEARTBEAT_PORTS=on") {
		t.Errorf("the SRS block does not point SRS's heartbeat, with its ports, at node 1:\n%s", srs)
	}

	// The failover walk-through: the demo names the origin that holds the
	// stream and its pid; killing it leaves the player playing and the
	// stream on the other origin. Then a node exits and the demo goes on.
	demoFailover(t, demo, playURL, status)

	// Ctrl-C stops the nodes and the origins, and keeps the logs (processes
	// exited before it).
	demo.Cmd.Process.Signal(syscall.SIGINT)
	if err := demo.Wait(45 * time.Second); err != nil {
		t.Fatalf("demo after Ctrl-C: %v\n%s", err, demo.Output())
	}
	stopped = true
	if m := regexp.MustCompile(`The logs are kept in (\S+)`).FindStringSubmatch(demo.Output()); m == nil {
		t.Errorf("the demo does not say where it kept its logs:\n%s", demo.Output())
	} else if _, err := os.Stat(filepath.Join(m[1], "n2.log")); err != nil {
		t.Errorf("the demo's logs are gone: %v", err)
	} else {
		os.RemoveAll(m[1])
	}
	for _, p := range []int{base, base + 2, base + 20, base + 30, base + 31, base + 32, base + 33} {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second); err == nil {
			c.Close()
			t.Errorf("port %d still open after the demo stopped", p)
		}
	}
}

// demoFailover follows the README's failover walk-through against a running
// demo whose stream plays at playURL: a player stays attached while the
// origin that holds the stream is killed (SIGKILL, by the pid the demo
// printed) and while node 2 exits.
func demoFailover(t *testing.T, demo *harness.Proc, playURL, status string) {
	t.Helper()
	player := harness.StartCopyPlayer(t, playURL)
	testkit.WaitFor(t, 60*time.Second, "a player through node 3 gets frames", func() bool {
		if player.Exited() {
			t.Fatalf("player exited: %s", player.Output())
		}
		return player.Frames() > 50
	})
	var placed []string
	testkit.WaitFor(t, 30*time.Second, "the demo names the origin that holds the stream", func() bool {
		placed = regexp.MustCompile(`stream __defaultVhost__/live/demo is on (origin-\d) \(pid (\d+)\)`).FindStringSubmatch(demo.Output())
		return placed != nil
	})
	var st mesh.Status
	if err := harness.GetJSON("http://"+status+"/mesh/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(st.Assignments, func(a mesh.AssignmentStatus) bool {
		return a.Key == "__defaultVhost__/live/demo" && a.Origin == placed[1]
	}) {
		t.Fatalf("the demo says the stream is on %s; the mesh says %+v", placed[1], st.Assignments)
	}
	other := "origin-1"
	if placed[1] == other {
		other = "origin-2"
	}
	pid, _ := strconv.Atoi(placed[2])
	atKill := player.Frames()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s (pid %d): %v", placed[1], pid, err)
	}
	testkit.WaitFor(t, 60*time.Second, "the player keeps playing after the origin is killed", func() bool {
		if player.Exited() {
			t.Fatalf("player exited after %s was killed: %s", placed[1], player.Output())
		}
		return player.Frames() > atKill+125 // 5 s of video
	})
	testkit.WaitFor(t, 30*time.Second, "the demo reports the move", func() bool {
		return strings.Contains(demo.Output(), "moved from "+placed[1]+" to "+other)
	})
	t.Logf("%s killed: the player went on from frame %d to %d on %s, longest stall %v", placed[1], atKill, player.Frames(), other, player.LongestStall())

	n2 := regexp.MustCompile(`(?m)^\s+n2\s+pid (\d+)`).FindStringSubmatch(demo.Output())
	if n2 == nil {
		t.Fatalf("the demo prints no pid for node n2:\n%s", demo.Output())
	}
	pid, _ = strconv.Atoi(n2[1])
	atKill = player.Frames()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 30*time.Second, "the demo says node n2 exited", func() bool {
		return strings.Contains(demo.Output(), "node n2 (pid "+n2[1]+") exited")
	})
	testkit.WaitFor(t, 30*time.Second, "the player keeps playing after node n2 exited", func() bool {
		if player.Exited() {
			t.Fatalf("player exited after node n2 did: %s", player.Output())
		}
		return player.Frames() > atKill+50
	})
	if demo.Exited() {
		t.Fatalf("the demo exited with a node:\n%s", demo.Output())
	}
}

// versionLess compares dotted versions ("1.26.8") numerically.
func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(pa), len(pb)); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// TestReadmeLayout checks that the README's Layout section lists every
// package of the module.
func TestReadmeLayout(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i := strings.Index(readme, "## Layout")
	if i < 0 {
		t.Fatal("README has no Layout section")
	}
	layout := fencedAfter(t, readme[i:], "## Layout")
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}", modulePrefix+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		dir := strings.TrimPrefix(pkg, modulePrefix) + "/"
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(dir) + `(\s|$)`).MatchString(layout) {
			t.Errorf("the README's Layout does not list %s", dir)
		}
	}
}

// TestDocsMediaLinesPlayEverywhere checks every FFmpeg command in the
// README, docs/ and the demo's output: one that encodes H.264 names
// -pix_fmt yuv420p, since FFmpeg keeps a test source's 4:4:4 otherwise and
// Safari, iOS and hardware decoders refuse High 4:4:4.
func TestDocsMediaLinesPlayEverywhere(t *testing.T) {
	files, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../README.md", "../statefulset/README.md", "../cmd/srs-mesh/demo.go")
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		// Join continued lines, so that a command is one line.
		text := strings.ReplaceAll(string(b), "\\\n", " ")
		for i, line := range strings.Split(text, "\n") {
			if !regexp.MustCompile(`(^|[\s` + "`" + `])ffmpeg\s+-`).MatchString(line) {
				continue
			}
			if strings.Contains(line, "libx264") || !strings.Contains(line, "-c:v copy") && !strings.Contains(line, "-c copy") {
				checked++
				if !strings.Contains(line, "-pix_fmt yuv420p") {
					t.Errorf("%s:%d: an FFmpeg line without -pix_fmt yuv420p: %s", f, i+1, strings.TrimSpace(line))
				}
			}
		}
	}
	if checked == 0 {
		t.Error("found no FFmpeg line to check")
	}
}
