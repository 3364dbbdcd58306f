package stream

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// The JSON form is in Raft logs and snapshots: its field names are fixed.
func TestRTCSessionJSON(t *testing.T) {
	s := RTCSession{Ufrag: "a:b", OriginID: "o1", OriginRTC: "10.0.0.5:8000", Key: "v/live/a",
		Resource: "http://10.0.0.5:1985/rtc/v1/whep/?x=1", Pwd: "p", CreatedUnixMs: 7}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"ufrag":"a:b","origin":"o1","origin_rtc":"10.0.0.5:8000","key":"v/live/a",` +
		`"resource":"http://10.0.0.5:1985/rtc/v1/whep/?x=1","pwd":"p","created_unix_ms":7}`
	if string(b) != want {
		t.Fatalf("json = %s\nwant   %s", b, want)
	}
	s.LastActiveUnixMs = 9
	if b, _ := json.Marshal(s); string(b) != want[:len(want)-1]+`,"last_active_unix_ms":9}` {
		t.Fatalf("json with activity = %s", b)
	}
	if s.LastSeenUnixMs() != 9 {
		t.Fatalf("last seen %d, want 9", s.LastSeenUnixMs())
	}
	b, _ = json.Marshal(RTCSession{Ufrag: "a:b"})
	if string(b) != `{"ufrag":"a:b","origin":"","origin_rtc":"","key":"","created_unix_ms":0}` {
		t.Fatalf("optional fields not omitted: %s", b)
	}
}

func TestRTCSessionValidate(t *testing.T) {
	ok := RTCSession{Ufrag: strings.Repeat("u", MaxRTCUfragBytes), OriginID: strings.Repeat("o", MaxRTCFieldBytes),
		Resource: strings.Repeat("r", MaxRTCResourceBytes), Pwd: strings.Repeat("p", MaxRTCPwdBytes)}
	if err := ok.Validate(); err != nil {
		t.Fatalf("session at the limits: %v", err)
	}
	for _, bad := range []RTCSession{
		{},
		{Ufrag: strings.Repeat("u", MaxRTCUfragBytes+1)},
		{Ufrag: "x", OriginRTC: strings.Repeat("o", MaxRTCFieldBytes+1)},
		{Ufrag: "x", Key: strings.Repeat("k", MaxRTCFieldBytes+1)},
		{Ufrag: "x", Resource: strings.Repeat("r", MaxRTCResourceBytes+1)},
		{Ufrag: "x", Pwd: strings.Repeat("p", MaxRTCPwdBytes+1)},
	} {
		if err := bad.Validate(); !errors.Is(err, ErrBadRTCSession) {
			t.Errorf("Validate(%.20q) = %v, want ErrBadRTCSession", bad.Ufrag, err)
		}
	}
	if err := (RTCSession{}).Validate(); err.Error() != "rtc session without ufrag" {
		t.Fatalf("error text %q", err)
	}
}
