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

// demoOptions are the flags of "srs-mesh demo".
type demoOptions struct {
	basePort int
	dir      string
	nginx    string
	module   string
	keep     bool
}

// demoPorts are the ports of one demo node, or of the origin (rtmp, http).
type demoPorts struct {
	rtmp, http, system, gossip, raft, api, rtc, srt int
}

// ports lays the demo out. With base 0 it uses the README's ports: node i
// (1..3) has RTMP 193i, HTTP 808i, system API 1202i, gossip 794i, Raft 795i,
// API 198i, WebRTC 800i and SRT 1008i, and the origin RTMP 19350 and HTTP
// 18080. With a base port b, node i uses b+10(i-1) .. b+10(i-1)+7 in that
// order and the origin b+30 and b+31.
func (o demoOptions) ports(node int) demoPorts {
	if o.basePort == 0 {
		if node == 0 {
			return demoPorts{rtmp: 19350, http: 18080}
		}
		return demoPorts{rtmp: 1930 + node, http: 8080 + node, system: 12020 + node, gossip: 7940 + node,
			raft: 7950 + node, api: 1980 + node, rtc: 8000 + node, srt: 10080 + node}
	}
	if node == 0 {
		return demoPorts{rtmp: o.basePort + 30, http: o.basePort + 31}
	}
	b := o.basePort + 10*(node-1)
	return demoPorts{rtmp: b, http: b + 1, system: b + 2, gossip: b + 3, raft: b + 4, api: b + 5, rtc: b + 6, srt: b + 7}
}

func newDemoCmd() *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a 3-node mesh and an nginx-rtmp origin on this machine, and print the URLs to publish and play",
		Long: `demo starts, on 127.0.0.1, an nginx-rtmp origin (Debian: apt-get install nginx
libnginx-mod-rtmp) and three srs-mesh nodes in front of it, waits until the
mesh has formed, and prints how to publish a stream to one node and play it
from another. Ctrl-C stops everything it started.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.basePort, "base-port", 0, "lay the demo's ports out from this one (0: the README's ports)")
	f.StringVar(&o.dir, "dir", "", "directory for the nodes' data, logs and the origin's files (default: a new temporary one)")
	f.StringVar(&o.nginx, "nginx", "nginx", "nginx binary with the RTMP module")
	f.StringVar(&o.module, "nginx-rtmp-module", demoNginxModule, "the nginx RTMP module to load")
	f.BoolVar(&o.keep, "keep", false, "keep the directory when the demo stops")
	return cmd
}

// demoProc is a process the demo started, in its own process group so that
// the terminal's Ctrl-C reaches the demo alone, which stops them in order.
type demoProc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
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

// runDemo starts the origin and the nodes, prints the URLs once the mesh
// works, and stops everything when ctx ends (Ctrl-C) or a process exits.
func runDemo(ctx context.Context, o demoOptions, out io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	nginx, err := exec.LookPath(o.nginx)
	if err != nil {
		return fmt.Errorf("the demo's origin is nginx with the RTMP module; on Debian: sudo apt-get install nginx libnginx-mod-rtmp (%w)", err)
	}
	if _, err := os.Stat(o.module); err != nil {
		return fmt.Errorf("no nginx RTMP module at %s; on Debian: sudo apt-get install libnginx-mod-rtmp (or --nginx-rtmp-module)", o.module)
	}
	for node := 0; node <= demoNodes; node++ {
		p := o.ports(node)
		for _, port := range []int{p.rtmp, p.http, p.system, p.gossip, p.raft, p.api} {
			if port != 0 && !portFree(port) {
				return fmt.Errorf("port %d on 127.0.0.1 is in use; stop what uses it or pick other ports with --base-port", port)
			}
		}
	}
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "srs-mesh-demo-"); err != nil {
			return err
		}
		if !o.keep {
			defer os.RemoveAll(dir)
		}
	}

	var procs []*demoProc
	defer func() { // nodes first (they leave the mesh), the origin last
		for i := len(procs) - 1; i >= 0; i-- {
			sig := syscall.SIGTERM
			if procs[i].name == "origin" {
				sig = syscall.SIGQUIT
			}
			procs[i].stop(sig, 15*time.Second)
		}
	}()

	origin := o.ports(0)
	conf, err := writeDemoNginx(dir, o.module, origin)
	if err != nil {
		return err
	}
	op, err := startDemoProc("origin", filepath.Join(dir, "origin.log"), nginx, "-p", filepath.Join(dir, "origin"), "-c", conf)
	if err != nil {
		return err
	}
	procs = append(procs, op)

	originFlag := fmt.Sprintf("id=origin-1,ip=127.0.0.1,rtmp=%d,http=%d", origin.rtmp, origin.http)
	for node := 1; node <= demoNodes; node++ {
		p := o.ports(node)
		args := []string{"serve", "--node-id", fmt.Sprintf("n%d", node), "--data-dir", filepath.Join(dir, fmt.Sprintf("n%d", node)),
			"--bootstrap-expect", strconv.Itoa(demoNodes), "--advertise-addr", "127.0.0.1",
			"--gossip-addr", addr(p.gossip), "--raft-addr", addr(p.raft), "--system-api", addr(p.system),
			"--rtmp", addr(p.rtmp), "--http", addr(p.http), "--api", addr(p.api), "--rtc", addr(p.rtc), "--srt", addr(p.srt),
			"--origin", originFlag, "--drain-timeout", "2s"}
		for other := 1; other <= demoNodes; other++ {
			if other != node {
				args = append(args, "--join", addr(o.ports(other).gossip))
			}
		}
		np, err := startDemoProc(fmt.Sprintf("n%d", node), filepath.Join(dir, fmt.Sprintf("n%d.log", node)), self, args...)
		if err != nil {
			return err
		}
		procs = append(procs, np)
	}

	fmt.Fprintf(out, "srs-mesh demo: starting an nginx-rtmp origin and %d nodes on 127.0.0.1 (logs in %s) ...\n", demoNodes, dir)
	if err := waitDemo(ctx, procs, o.ports(1).system); err != nil {
		if ctx.Err() != nil {
			return nil // Ctrl-C while starting
		}
		return err
	}
	n1, n3 := o.ports(1), o.ports(demoNodes)
	fmt.Fprintf(out, `
The mesh is up: 3 nodes, one origin.

  Publish a test stream to node 1:
    ffmpeg -re -f lavfi -i testsrc=size=640x360:rate=25 -f lavfi -i sine=frequency=440 -c:v libx264 -preset veryfast -tune zerolatency -g 50 -c:a aac -f flv rtmp://127.0.0.1:%d/live/demo

  Play it through node 3:
    ffplay rtmp://127.0.0.1:%d/live/demo
    ffplay http://127.0.0.1:%d/live/demo.m3u8

  Dashboard:  http://127.0.0.1:%d/
  Status:     srs-mesh status --addr 127.0.0.1:%d

Press Ctrl-C to stop the nodes and the origin.
`, n1.rtmp, n3.rtmp, n3.http, n1.system, n1.system)

	exits := watchExits(procs)
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out, "\nstopping the nodes and the origin ...")
			return nil
		case name := <-exits:
			if name != "origin" {
				return fmt.Errorf("node %s exited; see its log in %s", name, dir)
			}
			// Stopping the origin is part of the demo: the mesh marks it
			// down, and the dashboard shows the event.
			fmt.Fprintln(out, "\nThe origin stopped; the mesh marks it down within seconds (see the dashboard's events).")
		}
	}
}

// watchExits reports the name of each process that exits.
func watchExits(procs []*demoProc) <-chan string {
	ch := make(chan string, len(procs))
	for _, p := range procs {
		go func() { // ends when p does; the demo stops every process before it returns
			<-p.done
			ch <- p.name
		}()
	}
	return ch
}

// waitDemo waits until node 1 sees every node, a leader and the healthy
// origin, or a process exits, or 60 s pass.
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
		if demoReady(client, system) {
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

func demoReady(client *http.Client, system int) bool {
	resp, err := client.Get("http://" + addr(system) + "/mesh/v1/status")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var st mesh.Status
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return false
	}
	healthy := 0
	for _, o := range st.Origins {
		if o.Healthy {
			healthy++
		}
	}
	return st.Leader != "" && len(st.Members) == demoNodes && healthy == len(st.Origins) && healthy > 0
}

// writeDemoNginx writes the origin's configuration under dir/origin: RTMP
// app "live", with HLS served over HTTP.
func writeDemoNginx(dir, module string, p demoPorts) (string, error) {
	root := filepath.Join(dir, "origin")
	for _, d := range []string{"hls/live", "tmp", "logs"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", err
		}
	}
	conf := fmt.Sprintf(`load_module %[1]s;
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
	path := filepath.Join(root, "nginx.conf")
	return path, os.WriteFile(path, []byte(conf), 0o644)
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
