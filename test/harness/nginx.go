package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// NginxModule is where Debian's libnginx-mod-rtmp installs the RTMP module.
const NginxModule = "/usr/lib/nginx/modules/ngx_rtmp_module.so"

// Nginx is a running nginx-rtmp origin: RTMP on RTMPAddr, and HLS (.m3u8,
// .ts) and DASH (.mpd, .m4v, .m4a) files of app "live" over HTTP on HTTPAddr
// under /live/. Every HTTP request is logged (see AccessLog).
type Nginx struct {
	RTMPAddr string
	HTTPAddr string
	Dir      string
	cmd      *exec.Cmd
	done     chan struct{}
}

// NginxOptions selects what the origin writes besides RTMP.
type NginxOptions struct {
	HLS  bool
	DASH bool
	// OnPlay, when set, is the URL of the origin's on_play hook: nginx
	// POSTs every play to it and refuses the play unless it answers 2xx.
	OnPlay string
	// OnPublish, when set, is the URL of the origin's on_publish hook:
	// nginx POSTs every publish to it (the form carries name, app, addr)
	// and drops the connection unless it answers 2xx.
	OnPublish string
	// HLSFragment is the HLS segment length (default 1s).
	HLSFragment time.Duration
}

// StartNginx starts an nginx-rtmp origin on free loopback ports. The test is
// skipped when nginx or the RTMP module is missing. The process is killed at
// the end of the test.
func StartNginx(t testing.TB, opt NginxOptions) *Nginx {
	t.Helper()
	Need(t, "nginx")
	if _, err := os.Stat(NginxModule); err != nil {
		Missingf(t, "libnginx-mod-rtmp", "nginx rtmp module not installed (%s)", NginxModule)
	}
	dir := t.TempDir()
	n := &Nginx{
		RTMPAddr: fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t, false)),
		HTTPAddr: fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t, false)),
		Dir:      dir,
		done:     make(chan struct{}),
	}
	for _, d := range []string{"hls/live", "dash/live", "tmp", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	var app strings.Builder
	app.WriteString("            live on;\n            wait_key on;\n")
	if opt.OnPlay != "" {
		fmt.Fprintf(&app, "            on_play %s;\n", opt.OnPlay)
	}
	if opt.OnPublish != "" {
		fmt.Fprintf(&app, "            on_publish %s;\n", opt.OnPublish)
	}
	if opt.HLS {
		frag := max(opt.HLSFragment, time.Second)
		fmt.Fprintf(&app, "            hls on;\n            hls_path %s/hls/live;\n            hls_fragment %ds;\n            hls_playlist_length %ds;\n",
			dir, int(frag.Seconds()), 10*int(frag.Seconds()))
	}
	if opt.DASH {
		fmt.Fprintf(&app, "            dash on;\n            dash_path %s/dash/live;\n            dash_fragment 2s;\n            dash_playlist_length 20s;\n", dir)
	}
	conf := fmt.Sprintf(`load_module %[1]s;
user root;
daemon off;
master_process off;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/logs/error.log info;
events { worker_connections 1024; }
rtmp {
    server {
        listen %[3]s;
        chunk_size 4096;
        application live {
%[5]s        }
    }
}
http {
    log_format mesh '$request_method $request_uri $status $body_bytes_sent $http_x_forwarded_host';
    access_log %[2]s/logs/access.log mesh;
    client_body_temp_path %[2]s/tmp/body;
    proxy_temp_path %[2]s/tmp/proxy;
    fastcgi_temp_path %[2]s/tmp/fastcgi;
    uwsgi_temp_path %[2]s/tmp/uwsgi;
    scgi_temp_path %[2]s/tmp/scgi;
    types {
        application/vnd.apple.mpegurl m3u8;
        video/mp2t ts;
        application/dash+xml mpd;
        video/mp4 m4v mp4;
        audio/mp4 m4a;
    }
    server {
        listen %[4]s;
        add_header Cache-Control no-cache;
        location ~ \.(m3u8|ts)$ { root %[2]s/hls; }
        location ~ \.(mpd|m4v|m4a|mp4|m4s)$ { root %[2]s/dash; }
    }
}
`, NginxModule, dir, n.RTMPAddr, n.HTTPAddr, app.String())
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	out := newLockedBuffer()
	n.cmd = exec.Command("nginx", "-p", dir, "-c", confPath)
	n.cmd.Stdout, n.cmd.Stderr = out, out
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	go func() { n.cmd.Wait(); close(n.done) }()
	t.Cleanup(n.Kill)
	deadline := time.Now().Add(10 * time.Second)
	for !tcpUp(n.RTMPAddr) || !tcpUp(n.HTTPAddr) {
		select {
		case <-n.done:
			logs, _ := os.ReadFile(filepath.Join(dir, "logs", "error.log"))
			t.Fatalf("nginx exited: %s %s", tail(out.String(), 2000), tail(string(logs), 2000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not start listening on %s and %s", n.RTMPAddr, n.HTTPAddr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return n
}

// Kill stops the origin at once (SIGKILL), as a crash would. It is safe to
// call more than once.
func (n *Nginx) Kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	select {
	case <-n.done:
		return
	default:
	}
	syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	<-n.done
}

// AccessEntry is one request of nginx's access log.
type AccessEntry struct {
	Method string
	URI    string // the request URI as sent, query included
	Status int
	Bytes  int64
	// ForwardedHost is the request's X-Forwarded-Host: the address the
	// client used to reach the srs-mesh node that made the request, or ""
	// for a request that came straight to the origin.
	ForwardedHost string
}

// AccessLog returns the requests nginx has served so far, in order.
func (n *Nginx) AccessLog() []AccessEntry {
	b, _ := os.ReadFile(filepath.Join(n.Dir, "logs", "access.log"))
	var out []AccessEntry
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 5 {
			continue
		}
		e := AccessEntry{Method: f[0], URI: f[1], ForwardedHost: f[4]}
		e.Status, _ = strconv.Atoi(f[2])
		e.Bytes, _ = strconv.ParseInt(f[3], 10, 64)
		if e.ForwardedHost == "-" {
			e.ForwardedHost = ""
		}
		out = append(out, e)
	}
	return out
}

// ErrorLog returns nginx's error log, for test failure messages.
func (n *Nginx) ErrorLog() string {
	b, _ := os.ReadFile(filepath.Join(n.Dir, "logs", "error.log"))
	return string(b)
}

func tcpUp(addr string) bool {
	c, err := dialTimeout(addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
