package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/srs-mesh/srs-mesh/mesh"
)

// demoNginxModule is where Debian's libnginx-mod-rtmp installs the RTMP
// module.
const demoNginxModule = "/usr/lib/nginx/modules/ngx_rtmp_module.so"

// demoNodes is how many nodes the demo runs.
const demoNodes = 3

// demoOrigins is how many origins the demo runs: two, so that stopping the
// one that holds a stream shows the stream moving to the other.
const demoOrigins = 2

// demoOptions are the flags of "srs-mesh demo".
type demoOptions struct {
	basePort int
	dir      string
	nginx    string
	module   string
	keep     bool
	// printOrigin prints an origin's nginx.conf instead of running the
	// demo.
	printOrigin bool
}

// demoPorts are the ports of one demo node, or of the origin (rtmp, http).
type demoPorts struct {
	rtmp, http, system, gossip, raft, api, rtc, srt int
}

// ports lays the nodes out. With base 0 it uses the README's ports: node i
// (1..3) has RTMP 193i, HTTP 808i, system API 1202i, gossip 794i, Raft 795i,
// API 198i, WebRTC 800i and SRT 1008i. With a base port b, node i uses
// b+10(i-1) .. b+10(i-1)+7 in that order.
func (o demoOptions) ports(node int) demoPorts {
	if o.basePort == 0 {
		return demoPorts{rtmp: 1930 + node, http: 8080 + node, system: 12020 + node, gossip: 7940 + node,
			raft: 7950 + node, api: 1980 + node, rtc: 8000 + node, srt: 10080 + node}
	}
	b := o.basePort + 10*(node-1)
	return demoPorts{rtmp: b, http: b + 1, system: b + 2, gossip: b + 3, raft: b + 4, api: b + 5, rtc: b + 6, srt: b + 7}
}

// originPorts lays the origins out (only rtmp and http are set). With base
// 0, origin i (1..2) has RTMP 1934(9+i) and HTTP 1807(9+i): 19350 and 18080
// for the first; with a base port b, b+30+2(i-1) and the port after it.
func (o demoOptions) originPorts(origin int) demoPorts {
	if o.basePort == 0 {
		return demoPorts{rtmp: 19349 + origin, http: 18079 + origin}
	}
	b := o.basePort + 30 + 2*(origin-1)
	return demoPorts{rtmp: b, http: b + 1}
}

func newDemoCmd() *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a 3-node mesh and two nginx-rtmp origins on this machine, and print the URLs to publish and play",
		Long: `demo starts, on 127.0.0.1, two nginx-rtmp origins (Debian: apt-get install
nginx libnginx-mod-rtmp) and three srs-mesh nodes in front of them, waits
until the mesh has formed, and prints how to publish a stream to one node and
play it from another, with the pid of every process it started. Once a
stream starts it prints which origin holds it: stop that origin while a
player plays and the stream moves to the other one. A node that exits is
reported and the demo goes on with the others. Ctrl-C stops everything it
started; the logs stay when anything went wrong, and the demo says where.

With --print-origin-config it prints the nginx.conf of the demo's first
origin (RTMP 19350, HLS over HTTP 18080), for running the same mesh by hand.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.printOrigin {
				return printDemoOrigin(o, cmd.OutOrStdout())
			}
			return runDemo(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.basePort, "base-port", 0, "lay the demo's ports out from this one (0: the README's ports)")
	f.StringVar(&o.dir, "dir", "", "directory for the nodes' data, logs and the origins' files (default: a new temporary one)")
	f.StringVar(&o.nginx, "nginx", "nginx", "nginx binary with the RTMP module")
	f.StringVar(&o.module, "nginx-rtmp-module", demoNginxModule, "the nginx RTMP module to load")
	f.BoolVar(&o.keep, "keep", false, "keep the directory when the demo stops cleanly (it is always kept after a failure)")
	f.BoolVar(&o.printOrigin, "print-origin-config", false, "print the nginx.conf of the demo's first origin, with its files under --dir (default /tmp/srs-mesh-origin), and exit")
	return cmd
}

// demoProc is a process the demo started, in its own process group so that
// the terminal's Ctrl-C reaches the demo alone, which stops them in order.
type demoProc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
	// system is a node's system API port (0 for an origin).
	system int
}

func startDemoProc(name, logPath, bin string, args ...string) (*demoProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p := &demoProc{name: name, cmd: exec.Command(bin, args...), done: make(chan struct{}), log: logPath}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { // owned by p: ends when the process does
		p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *demoProc) pid() int { return p.cmd.Process.Pid }

func (p *demoProc) isOrigin() bool { return strings.HasPrefix(p.name, "origin") }

// stop sends sig and waits up to d, then kills the process.
func (p *demoProc) stop(sig syscall.Signal, d time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(d):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *demoProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// runDemo starts the origins and the nodes, prints the URLs once the mesh
// works, reports where streams are and which processes exit, and stops
// everything when ctx ends (Ctrl-C) or every node has exited. It removes a
// temporary directory only when nothing went wrong; otherwise it says where
// the logs are.
func runDemo(ctx context.Context, o demoOptions, out io.Writer) (err error) {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	nginx, err := exec.LookPath(o.nginx)
	if err != nil {
		return fmt.Errorf("the demo's origins are nginx with the RTMP module; on Debian: sudo apt-get install nginx libnginx-mod-rtmp (%w)", err)
	}
	if _, err := os.Stat(o.module); err != nil {
		return fmt.Errorf("no nginx RTMP module at %s; on Debian: sudo apt-get install libnginx-mod-rtmp (or --nginx-rtmp-module)", o.module)
	}
	var ports []int
	for node := 1; node <= demoNodes; node++ {
		p := o.ports(node)
		ports = append(ports, p.rtmp, p.http, p.system, p.gossip, p.raft, p.api)
	}
	for origin := 1; origin <= demoOrigins; origin++ {
		ports = append(ports, o.originPorts(origin).rtmp, o.originPorts(origin).http)
	}
	for _, port := range ports {
		if !portFree(port) {
			return fmt.Errorf("port %d on 127.0.0.1 is in use; stop what uses it or pick other ports with --base-port", port)
		}
	}
	dir, temp := o.dir, false
	if dir == "" {
		if dir, err = os.MkdirTemp("", "srs-mesh-demo-"); err != nil {
			return err
		}
		temp = true
	}

	var procs []*demoProc
	troubled := false // a process exited before Ctrl-C
	defer func() {
		// Nodes first (they leave the mesh), the origins last.
		for i := len(procs) - 1; i >= 0; i-- {
			sig := syscall.SIGTERM
			if procs[i].isOrigin() {
				sig = syscall.SIGQUIT
			}
			procs[i].stop(sig, 15*time.Second)
		}
		switch {
		case err != nil || troubled:
			fmt.Fprintf(out, "The logs are kept in %s\n", dir)
		case temp && !o.keep:
			os.RemoveAll(dir)
		default:
			fmt.Fprintf(out, "The logs are in %s\n", dir)
		}
	}()

	var originFlags []string
	for origin := 1; origin <= demoOrigins; origin++ {
		name, p := fmt.Sprintf("origin-%d", origin), o.originPorts(origin)
		root := filepath.Join(dir, name)
		conf, err := writeDemoNginx(root, o.module, p)
		if err != nil {
			return err
		}
		op, err := startDemoProc(name, filepath.Join(dir, name+".log"), nginx, "-p", root, "-c", conf)
		if err != nil {
			return err
		}
		procs = append(procs, op)
		originFlags = append(originFlags, "--origin", fmt.Sprintf("id=%s,ip=127.0.0.1,rtmp=%d,http=%d", name, p.rtmp, p.http))
	}

	for node := 1; node <= demoNodes; node++ {
		p := o.ports(node)
		args := []string{"serve", "--node-id", fmt.Sprintf("n%d", node), "--data-dir", filepath.Join(dir, fmt.Sprintf("n%d", node)),
			"--bootstrap-expect", strconv.Itoa(demoNodes), "--advertise-addr", "127.0.0.1",
			"--gossip-addr", addr(p.gossip), "--raft-addr", addr(p.raft), "--system-api", addr(p.system),
			"--rtmp", addr(p.rtmp), "--http", addr(p.http), "--api", addr(p.api), "--rtc", addr(p.rtc), "--srt", addr(p.srt),
			"--drain-timeout", "2s"}
		args = append(args, originFlags...)
		for other := 1; other <= demoNodes; other++ {
			if other != node {
				args = append(args, "--join", addr(o.ports(other).gossip))
			}
		}
		np, err := startDemoProc(fmt.Sprintf("n%d", node), filepath.Join(dir, fmt.Sprintf("n%d.log", node)), self, args...)
		if err != nil {
			return err
		}
		np.system = p.system
		procs = append(procs, np)
	}

	fmt.Fprintf(out, "srs-mesh demo: starting %d nginx-rtmp origins and %d nodes on 127.0.0.1 (logs in %s) ...\n", demoOrigins, demoNodes, dir)
	if err := waitDemo(ctx, procs, o.ports(1).system); err != nil {
		if ctx.Err() != nil {
			return nil // Ctrl-C while starting
		}
		return err
	}
	n1, n3 := o.ports(1), o.ports(demoNodes)
	fmt.Fprintf(out, `
The mesh is up: %d nodes in front of %d origins.

  Publish a test stream to node 1:
    ffmpeg -re -f lavfi -i testsrc=size=640x360:rate=25 -f lavfi -i sine=frequency=440 -c:v libx264 -pix_fmt yuv420p -preset veryfast -tune zerolatency -g 50 -c:a aac -f flv rtmp://127.0.0.1:%d/live/demo

  Play it through node 3:
    ffplay rtmp://127.0.0.1:%d/live/demo
    ffplay http://127.0.0.1:%d/live/demo.m3u8

  Dashboard:  http://127.0.0.1:%d/
  Status:     srs-mesh status --addr 127.0.0.1:%d   (the ORIGIN column: which origin holds a stream)

`, demoNodes, demoOrigins, n1.rtmp, n3.rtmp, n3.http, n1.system, n1.system)
	fmt.Fprintln(out, "  Processes (stop one with kill PID; the demo says what happens):")
	for _, p := range procs {
		if p.isOrigin() {
			fmt.Fprintf(out, "    %-9s pid %-7d an origin: RTMP 127.0.0.1:%d\n", p.name, p.pid(), o.originPorts(originIndex(p.name)).rtmp)
			continue
		}
		node, _ := strconv.Atoi(strings.TrimPrefix(p.name, "n"))
		fmt.Fprintf(out, "    %-9s pid %-7d a node: RTMP 127.0.0.1:%d, system API 127.0.0.1:%d\n", p.name, p.pid(), o.ports(node).rtmp, p.system)
	}
	fmt.Fprint(out, `
Once a stream plays, the demo prints the origin that holds it and that
origin's pid: kill it while the player plays, and the stream moves to the
other origin. Press Ctrl-C to stop the nodes and the origins.
`)

	exits := watchExits(procs)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	placed := map[string]string{} // stream key -> the origin last reported
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out, "\nstopping the nodes and the origins ...")
			return nil
		case <-tick.C:
			reportPlacement(ctx, client, procs, placed, out)
		case p := <-exits:
			troubled = true
			if err := reportExit(p, procs, out); err != nil {
				return err
			}
		}
	}
}

// originIndex is i of "origin-i".
func originIndex(name string) int {
	i, _ := strconv.Atoi(strings.TrimPrefix(name, "origin-"))
	return i
}

// reportExit tells the user what the exit of p means for the demo, and
// returns an error when no node is left.
func reportExit(p *demoProc, procs []*demoProc, out io.Writer) error {
	var nodes, origins []string
	for _, q := range procs {
		if q.exited() {
			continue
		}
		if q.isOrigin() {
			origins = append(origins, q.name)
		} else {
			nodes = append(nodes, q.name)
		}
	}
	if p.isOrigin() {
		if len(origins) == 0 {
			fmt.Fprintf(out, "\n%s (pid %d) exited. No origin is left: streams stop until one is back (its log: %s).\n", p.name, p.pid(), p.log)
			return nil
		}
		fmt.Fprintf(out, "\n%s (pid %d) exited. The mesh marks it down within seconds and moves its streams to %s;\n"+
			"publishers and players stay connected (its log: %s).\n", p.name, p.pid(), strings.Join(origins, ", "), p.log)
		return nil
	}
	if len(nodes) == 0 {
		return fmt.Errorf("node %s exited, and no node is left; see the logs in %s", p.name, filepath.Dir(p.log))
	}
	fmt.Fprintf(out, "\nnode %s (pid %d) exited (its log: %s). The demo goes on with %s;\n"+
		"clients of %s reconnect to another node.\n", p.name, p.pid(), p.log, strings.Join(nodes, " and "), p.name)
	return nil
}

// maxReported bounds the streams whose placement the demo remembers.
const maxReported = 64

// reportPlacement asks a running node where the streams are, and prints
// each stream that appeared or moved since the last call.
func reportPlacement(ctx context.Context, client *http.Client, procs []*demoProc, placed map[string]string, out io.Writer) {
	var st mesh.Status
	got := false
	for _, p := range procs {
		if p.system == 0 || p.exited() {
			continue
		}
		if getDemoStatus(ctx, client, p.system, &st) == nil {
			got = true
			break
		}
	}
	if !got {
		return
	}
	pids := map[string]int{}
	for _, p := range procs {
		if p.isOrigin() {
			pids[p.name] = p.pid()
		}
	}
	seen := map[string]bool{}
	for _, a := range st.Assignments {
		seen[a.Key] = true
		last, known := placed[a.Key]
		if a.Origin == last || !a.OriginHealthy || (!known && len(placed) >= maxReported) {
			continue
		}
		placed[a.Key] = a.Origin
		if !known {
			fmt.Fprintf(out, "\nstream %s is on %s (pid %d): kill %d to stop that origin and watch the stream move.\n",
				a.Key, a.Origin, pids[a.Origin], pids[a.Origin])
			continue
		}
		fmt.Fprintf(out, "\nstream %s moved from %s to %s (pid %d).\n", a.Key, last, a.Origin, pids[a.Origin])
	}
	for key := range placed {
		if !seen[key] {
			delete(placed, key)
		}
	}
}

// watchExits reports each process that exits.
func watchExits(procs []*demoProc) <-chan *demoProc {
	ch := make(chan *demoProc, len(procs))
	for _, p := range procs {
		go func() { // ends when p does; the demo stops every process before it returns
			<-p.done
			ch <- p
		}()
	}
	return ch
}

// waitDemo waits until node 1 sees every node, a leader and every origin
// healthy, or a process exits, or 60 s pass.
func waitDemo(ctx context.Context, procs []*demoProc, system int) error {
	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		for _, p := range procs {
			if p.exited() {
				b, _ := os.ReadFile(p.log)
				return fmt.Errorf("%s exited:\n%s", p.name, lastBytes(string(b), 2000))
			}
		}
		if demoReady(ctx, client, system) {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("the mesh did not form within 60 s; see the logs")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func getDemoStatus(ctx context.Context, client *http.Client, system int, st *mesh.Status) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr(system)+"/mesh/v1/status", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(st)
}

func demoReady(ctx context.Context, client *http.Client, system int) bool {
	var st mesh.Status
	if getDemoStatus(ctx, client, system, &st) != nil {
		return false
	}
	healthy := 0
	for _, o := range st.Origins {
		if o.Healthy {
			healthy++
		}
	}
	return st.Leader != "" && len(st.Members) == demoNodes && healthy == demoOrigins
}

// printDemoOrigin prints the nginx.conf of the demo's first origin, its
// files under o.dir (default /tmp/srs-mesh-origin), with how to run it.
func printDemoOrigin(o demoOptions, out io.Writer) error {
	root := o.dir
	if root == "" {
		root = filepath.Join(os.TempDir(), "srs-mesh-origin")
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	p := o.originPorts(1)
	fmt.Fprintf(out, `# nginx-rtmp origin for srs-mesh: RTMP on 127.0.0.1:%d, HLS over HTTP on
# 127.0.0.1:%d, its files under %[3]s. Run it with:
#   mkdir -p %[3]s/logs %[3]s/tmp %[3]s/hls/live
#   srs-mesh demo --print-origin-config > %[3]s/nginx.conf
#   nginx -p %[3]s -c %[3]s/nginx.conf
# and name it to every node: --origin id=o1,ip=127.0.0.1,rtmp=%[1]d,http=%[2]d
`, p.rtmp, p.http, root)
	_, err = io.WriteString(out, demoNginxConf(o.module, root, p))
	return err
}

// writeDemoNginx writes an origin's configuration under root and creates
// the directories it names.
func writeDemoNginx(root, module string, p demoPorts) (string, error) {
	for _, d := range []string{"hls/live", "tmp", "logs"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", err
		}
	}
	path := filepath.Join(root, "nginx.conf")
	return path, os.WriteFile(path, []byte(demoNginxConf(module, root, p)), 0o644)
}

// demoNginxConf is an origin's nginx.conf: RTMP app "live" on 127.0.0.1,
// with HLS served over HTTP, every file under root (an absolute path).
func demoNginxConf(module, root string, p demoPorts) string {
	return fmt.Sprintf(`load_module %[1]s;
daemon off;
master_process off;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/logs/error.log warn;
events { worker_connections 1024; }
rtmp {
    server {
        listen 127.0.0.1:%[3]d;
        application live {
            live on;
            hls on;
            hls_path %[2]s/hls/live;
            hls_fragment 2s;
            hls_playlist_length 12s;
        }
    }
}
http {
    access_log off;
    client_body_temp_path %[2]s/tmp/body;
    proxy_temp_path %[2]s/tmp/proxy;
    fastcgi_temp_path %[2]s/tmp/fastcgi;
    uwsgi_temp_path %[2]s/tmp/uwsgi;
    scgi_temp_path %[2]s/tmp/scgi;
    types {
        application/vnd.apple.mpegurl m3u8;
        video/mp2t ts;
    }
    server {
        listen 127.0.0.1:%[4]d;
        add_header Cache-Control no-cache;
        location ~ \.(m3u8|ts)$ { root %[2]s/hls; }
    }
}
`, module, root, p.rtmp, p.http)
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// portFree reports whether nothing listens on 127.0.0.1:port (TCP).
func portFree(port int) bool {
	ln, err := net.Listen("tcp", addr(port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func lastBytes(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
