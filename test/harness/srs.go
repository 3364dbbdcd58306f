package harness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/srs-mesh/srs-mesh/test/testkit"
)

// SRSBinaryEnv names the environment variable that points at an SRS binary
// (trunk/objs/srs of a local build). Tests that need a real SRS origin are
// skipped when it is not set.
const SRSBinaryEnv = "SRS_MESH_TEST_SRS"

// SRS is a running SRS origin on loopback ports.
type SRS struct {
	ID       string
	RTMPAddr string
	HTTPAddr string
	APIAddr  string
	SRTPort  int
	RTCPort  int
	Dir      string
	proc     *Proc
}

// SRSOptions configures an SRS origin.
type SRSOptions struct {
	// ID becomes the heartbeat's device_id and the server id SRS reports.
	ID string
	// HeartbeatURL, when set, makes SRS register itself there every
	// HeartbeatInterval (default 2s).
	HeartbeatURL      string
	HeartbeatInterval time.Duration
	// EdgeOf, when set, makes this SRS an edge server of the default vhost
	// that pulls and pushes streams through this RTMP address ("ip:port"),
	// e.g. an srs-mesh node.
	EdgeOf string
	// APIAuth, "user:password", turns on SRS's http_api.auth: every call
	// below /api/ on its API port then needs Basic auth with it (SRS does
	// not ask it of WebRTC signalling under /rtc/).
	APIAuth string
}

// StartSRS starts a real SRS origin, or skips the test when SRS_MESH_TEST_SRS
// does not name an SRS binary. SRS announces 127.0.0.1 as its address and
// never calls out to the Internet.
func StartSRS(t testing.TB, opt SRSOptions) *SRS {
	t.Helper()
	bin := os.Getenv(SRSBinaryEnv)
	if bin == "" {
		Missingf(t, "srs", "set %s to an SRS binary to run tests against real SRS origins", SRSBinaryEnv)
	}
	if _, err := os.Stat(bin); err != nil {
		Missingf(t, "srs", "%s=%s: %v", SRSBinaryEnv, bin, err)
	}
	dir := t.TempDir()
	s := &SRS{
		ID:       opt.ID,
		RTMPAddr: fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t, false)),
		HTTPAddr: fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t, false)),
		APIAddr:  fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t, false)),
		SRTPort:  testkit.FreeUDPPort(t),
		RTCPort:  testkit.FreeUDPPort(t),
		Dir:      dir,
	}
	if err := os.MkdirAll(filepath.Join(dir, "html"), 0o755); err != nil {
		t.Fatal(err)
	}
	interval := opt.HeartbeatInterval
	if interval == 0 {
		interval = 2 * time.Second
	}
	heartbeat := "heartbeat { enabled off; }"
	if opt.HeartbeatURL != "" {
		heartbeat = fmt.Sprintf(`heartbeat {
    enabled on;
    interval %.1f;
    url %s;
    device_id "%s";
    summaries off;
    ports on;
}`, interval.Seconds(), opt.HeartbeatURL, opt.ID)
	}
	edge := ""
	if opt.EdgeOf != "" {
		edge = fmt.Sprintf("cluster { mode remote; origin %s; }", opt.EdgeOf)
	}
	auth := ""
	if opt.APIAuth != "" {
		user, pass, _ := strings.Cut(opt.APIAuth, ":")
		auth = fmt.Sprintf("auth { enabled on; username %s; password %s; }", user, pass)
	}
	conf := fmt.Sprintf(`listen %[1]s;
max_connections 1000;
daemon off;
pid %[2]s/srs.pid;
srs_log_tank console;
srs_log_level warn;
query_latest_version off;
http_api {
    enabled on;
    listen %[3]s;
    %[9]s
}
http_server {
    enabled on;
    listen %[4]s;
    dir %[2]s/html;
}
rtc_server {
    enabled on;
    listen %[5]d;
    candidate 127.0.0.1;
}
srt_server {
    enabled on;
    listen %[6]d;
}
stats { network 0; }
%[7]s
vhost __defaultVhost__ {
    %[8]s
    http_remux {
        enabled on;
        mount [vhost]/[app]/[stream].flv;
    }
    hls {
        enabled on;
        hls_path %[2]s/html;
        hls_fragment 1;
        hls_window 10;
    }
    dash {
        enabled on;
        dash_path %[2]s/html;
        dash_fragment 2;
    }
    rtc {
        enabled on;
        rtmp_to_rtc on;
        rtc_to_rtmp on;
    }
    srt {
        enabled on;
        srt_to_rtmp on;
    }
    play {
        gop_cache on;
    }
}
`, s.RTMPAddr, dir, s.APIAddr, s.HTTPAddr, s.RTCPort, s.SRTPort, heartbeat, edge, auth)
	confPath := filepath.Join(dir, "srs.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Proc{Cmd: exec.Command(bin, "-c", confPath), out: newLockedBuffer(), done: make(chan struct{})}
	p.Cmd.Dir = dir
	p.Cmd.Env = append(os.Environ(), "SRS_DEVICE_IP=127.0.0.1", "SRS_QUERY_LATEST_VERSION=off")
	p.Cmd.Stdout, p.Cmd.Stderr = p.out, p.out
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start srs: %v", err)
	}
	go func() { p.err = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(p.Kill)
	s.proc = p
	deadline := time.Now().Add(15 * time.Second)
	for !tcpUp(s.RTMPAddr) || !tcpUp(s.APIAddr) {
		if p.Exited() {
			t.Fatalf("srs exited: %s", tail(p.Output(), 3000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("srs did not start: %s", tail(p.Output(), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// Kill stops the origin at once.
func (s *SRS) Kill() { s.proc.Kill() }

// Logs returns what SRS printed.
func (s *SRS) Logs() string { return s.proc.Output() }

// SRSHasFFmpegFit reports whether the SRS binary was built with its FFmpeg
// transcoder (configure --ffmpeg-fit=on), which SRS needs to bridge RTMP to
// WebRTC. It looks for libavcodec's symbols in the binary.
func SRSHasFFmpegFit() bool {
	b, err := os.ReadFile(os.Getenv(SRSBinaryEnv))
	return err == nil && bytes.Contains(b, []byte("avcodec_send_frame"))
}

// Pid is the SRS process's id.
func (s *SRS) Pid() int { return s.proc.Cmd.Process.Pid }
