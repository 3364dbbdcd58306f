package stream

import (
	"errors"
	"testing"
)

// srsHeartbeatSummaries is the shape of SRS's heartbeat with
// "summaries on" (srs_api_dump_summaries), trimmed.
const srsHeartbeatSummaries = `{"device_id":"my-srs-device","ip":"10.0.0.5","server":"vid-0xr1z3n","service":"f8s2k1","pid":"12345",
"rtmp":["1935"],"http":["8080"],
"summaries":{"code":0,"data":{"ok":true,"now_ms":1700000000000,
 "self":{"version":"6.0.113","pid":12345,"mem_kbyte":51234,"mem_percent":0.01,"cpu_percent":1.35,"srs_uptime":3600},
 "system":{"cpu_percent":0.4275,"disk_read_KBps":0,"cpus":4,"load_1m":0.5,
  "net_sample_time":1700000000000,"net_recv_bytes":1000,"net_send_bytes":2000,
  "srs_sample_time":1700000000000,"srs_recv_bytes":123456789,"srs_send_bytes":987654321,
  "conn_sys":40,"conn_sys_et":30,"conn_sys_tw":2,"conn_sys_udp":3,"conn_srs":17}}}}`

func TestParseHeartbeatLoad(t *testing.T) {
	o, l, err := ParseHeartbeat([]byte(srsHeartbeatSummaries), "")
	if err != nil {
		t.Fatal(err)
	}
	if o.ID != "vid-0xr1z3n" || o.RTMP != "10.0.0.5:1935" || o.MaxStreams != 0 || o.Weight != 0 {
		t.Fatalf("origin %+v", o)
	}
	want := Load{CPUPermille: 428, SelfCPUPermille: 1350, Conns: 17, SampleMs: 1700000000000,
		RecvBytes: 123456789, SendBytes: 987654321}
	if l == nil || *l != want {
		t.Fatalf("load %+v, want %+v", l, want)
	}
	// No summaries: no load. Malformed summaries: no load, but the
	// heartbeat is accepted.
	for _, body := range []string{
		`{"server":"s","ip":"10.0.0.5","rtmp":["1935"]}`,
		`{"server":"s","ip":"10.0.0.5","rtmp":["1935"],"summaries":null}`,
	} {
		if _, l, err := ParseHeartbeat([]byte(body), ""); err != nil || l != nil {
			t.Errorf("%s: load %+v, err %v; want none", body, l, err)
		}
	}
	for _, body := range []string{
		`{"server":"s","ip":"10.0.0.5","rtmp":["1935"],"summaries":"x"}`,
		`{"server":"s","ip":"10.0.0.5","rtmp":["1935"],"summaries":{"data":{"system":{"cpu_percent":"NaN","conn_srs":-4,"srs_recv_bytes":1e400}}}}`,
		`{"server":"s","ip":"10.0.0.5","rtmp":["1935"],"summaries":{"data":{"system":{"cpu_percent":7,"conn_srs":"12"}}}}`,
	} {
		_, l, err := ParseHeartbeat([]byte(body), "")
		if err != nil {
			t.Errorf("%s: %v", body, err)
			continue
		}
		if l != nil && !l.Valid() {
			t.Errorf("%s: invalid load %+v", body, l)
		}
	}
	_, l, _ = ParseHeartbeat([]byte(`{"server":"s","ip":"10.0.0.5","rtmp":["1935"],"summaries":{"data":{"system":{"cpu_percent":7,"conn_srs":"12"}}}}`), "")
	if l.CPUPermille != MaxPermille || l.Conns != 12 {
		t.Fatalf("clamped load %+v", l)
	}
	// Capacity fields, as numbers or strings, within bounds.
	o, _, err = ParseHeartbeat([]byte(`{"server":"s","ip":"10.0.0.5","rtmp":["1935"],"max_streams":200,"weight":"3"}`), "")
	if err != nil || o.MaxStreams != 200 || o.Weight != 3 {
		t.Fatalf("capacity: %+v, %v", o, err)
	}
	for _, body := range []string{
		`{"server":"s","ip":"10.0.0.5","rtmp":["1935"],"max_streams":-1}`,
		`{"server":"s","ip":"10.0.0.5","rtmp":["1935"],"max_streams":1.5}`,
		`{"server":"s","ip":"10.0.0.5","rtmp":["1935"],"max_streams":"lots"}`,
		`{"server":"s","ip":"10.0.0.5","rtmp":["1935"],"weight":1001}`,
		`{"server":"s","ip":"10.0.0.5","rtmp":["1935"],"max_streams":99999999999999999999}`,
	} {
		if _, _, err := ParseHeartbeat([]byte(body), ""); !errors.Is(err, ErrRegistration) {
			t.Errorf("%s: %v, want ErrRegistration", body, err)
		}
	}
}

func TestParseStaticOriginCapacity(t *testing.T) {
	o, err := ParseStaticOrigin("id=o1,ip=10.0.0.5,rtmp=1935,max_streams=200,weight=2")
	if err != nil || o.MaxStreams != 200 || o.Weight != 2 {
		t.Fatalf("%+v, %v", o, err)
	}
	for _, bad := range []string{"id=o1,rtmp=1935,max_streams=-3", "id=o1,rtmp=1935,weight=x", "id=o1,rtmp=1935,weight=5000"} {
		if _, err := ParseStaticOrigin(bad); !errors.Is(err, ErrRegistration) {
			t.Errorf("%s: %v, want ErrRegistration", bad, err)
		}
	}
}

func TestSelectCapacity(t *testing.T) {
	k := Key{Vhost: DefaultVhost, App: "live", Stream: "s"}
	full := []Candidate{{ID: "a", Healthy: true, Streams: 2, MaxStreams: 2}, {ID: "b", Healthy: true, Streams: 5, MaxStreams: 5}}
	if _, err := Select(k, full); !errors.Is(err, ErrOriginsFull) || !errors.Is(err, ErrNoOrigin) {
		t.Fatalf("all full: %v", err)
	}
	if _, err := SelectByHash(k, full); !errors.Is(err, ErrOriginsFull) {
		t.Fatalf("all full, by hash: %v", err)
	}
	if id, err := Select(k, append(full, Candidate{ID: "c", Healthy: true, Streams: 100})); err != nil || id != "c" {
		t.Fatalf("one with room: %q, %v", id, err)
	}
	if _, err := Select(k, []Candidate{{ID: "a", Healthy: false}}); errors.Is(err, ErrOriginsFull) || !errors.Is(err, ErrNoOrigin) {
		t.Fatalf("none healthy: %v", err)
	}
	// Load: fewer streams lose to a much lower CPU use.
	id, _ := Select(k, []Candidate{{ID: "busy", Healthy: true, Streams: 1, CPUPermille: 950}, {ID: "idle", Healthy: true, Streams: 2, CPUPermille: 0}})
	if id != "idle" {
		t.Fatalf("busy with 1 stream vs idle with 2: %s", id)
	}
}

func FuzzParseHeartbeat(f *testing.F) {
	f.Add([]byte(srsHeartbeatSummaries), "127.0.0.1")
	f.Add([]byte(`{"server":"s","ip":"10.0.0.5","rtmp":["1935"],"max_streams":"7","summaries":{"data":{"system":{"cpu_percent":"0.5"}}}}`), "")
	f.Add([]byte(`{"server":"s","rtmp":["1"],"summaries":{"data":{"self":{"cpu_percent":1e308}}}}`), "10.0.0.1")
	f.Fuzz(func(t *testing.T, body []byte, remote string) {
		o, l, err := ParseHeartbeat(body, remote)
		if err != nil {
			if !errors.Is(err, ErrRegistration) {
				t.Fatalf("error %v is not ErrRegistration", err)
			}
			return
		}
		if o.CheckCapacity() != nil {
			t.Fatalf("accepted capacity out of bounds: %+v", o)
		}
		if l != nil && !l.Valid() {
			t.Fatalf("accepted load out of bounds: %+v", l)
		}
	})
}
