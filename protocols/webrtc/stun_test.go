package webrtc

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/pion/stun/v3"
)

// bindingRequest builds a Binding request with pion/stun, as an ICE agent does.
func bindingRequest(t testing.TB, user string) []byte {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest,
		stun.NewUsername(user), stun.NewShortTermIntegrity("pwd"), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

// truncated22 is the 22-byte packet that crashes SRS's proxy: a Binding
// request header announcing 4 bytes of attributes, of which 2 are present.
var truncated22 = []byte{
	0x00, 0x01, 0x00, 0x04, 0x21, 0x12, 0xa4, 0x42,
	1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
	0x00, 0x06,
}

func TestSTUNUsername(t *testing.T) {
	valid := bindingRequest(t, "ans1:off1")
	user, h, err := STUNUsername(valid)
	if err != nil || string(user) != "ans1:off1" || h.Type != stunBindingRequest || !h.isRequest() {
		t.Fatalf("valid: %q %#x %v", user, h.Type, err)
	}

	wrongCookie := append([]byte(nil), valid...)
	wrongCookie[4] ^= 0xff
	oversized := append([]byte(nil), valid...)
	binary.BigEndian.PutUint16(oversized[2:4], uint16(len(valid)))
	// A header whose length covers an attribute that claims more than is left.
	attrTooLong := []byte{
		0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42,
		1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
		0x00, 0x06, 0x00, 0x40, 'a', 'b', 'c', 'd',
	}
	// A consistent header whose only attribute is cut after its type.
	attrHeaderCut := []byte{
		0x00, 0x01, 0x00, 0x04, 0x21, 0x12, 0xa4, 0x42,
		1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
		0x00, 0x06, 0x00, 0x08,
	}
	noUser, _ := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	emptyUser := []byte{
		0x00, 0x01, 0x00, 0x04, 0x21, 0x12, 0xa4, 0x42,
		1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
		0x00, 0x06, 0x00, 0x00,
	}
	odd := append([]byte(nil), valid...)
	binary.BigEndian.PutUint16(odd[2:4], 6)

	for _, tc := range []struct {
		name string
		p    []byte
		want error
	}{
		{"empty", nil, ErrSTUNShort},
		{"header only, short", valid[:19], ErrSTUNShort},
		{"truncated body", valid[:len(valid)-4], ErrSTUNLength},
		{"22-byte truncated attribute", truncated22, ErrSTUNLength},
		{"attribute header truncated", attrHeaderCut, ErrSTUNAttrTrunc},
		{"attribute longer than message", attrTooLong, ErrSTUNAttrTrunc},
		{"wrong magic cookie", wrongCookie, ErrSTUNCookie},
		{"oversized length", oversized, ErrSTUNLength},
		{"length not multiple of 4", odd, ErrSTUNLength},
		{"not stun", append([]byte{0x80}, valid[1:]...), ErrSTUNNotSTUN},
		{"no username", noUser.Raw, ErrSTUNNoUsername},
		{"empty username", emptyUser, ErrSTUNBadUsername},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := STUNUsername(tc.p); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSTUNUsernameAllocs(t *testing.T) {
	p := bindingRequest(t, "ans1:off1")
	if n := testing.AllocsPerRun(100, func() { _, _, _ = STUNUsername(p) }); n != 0 {
		t.Fatalf("%v allocs per parse", n)
	}
}

func TestClassify(t *testing.T) {
	for b, want := range map[byte]packetClass{
		0: classSTUN, 3: classSTUN, 4: classOther, 19: classOther, 20: classDTLS, 63: classDTLS,
		64: classOther, 127: classOther, 128: classRTP, 191: classRTP, 192: classOther, 255: classOther,
	} {
		if got := classify([]byte{b}); got != want {
			t.Errorf("classify(%d) = %d, want %d", b, got, want)
		}
	}
	if classify(nil) != classOther {
		t.Error("empty packet")
	}
}

func FuzzSTUNUsername(f *testing.F) {
	f.Add(bindingRequest(f, "ans1:off1"))
	f.Add(truncated22)
	f.Add([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		user, _, err := STUNUsername(p)
		if err != nil {
			return
		}
		if len(user) == 0 || len(user) > stunMaxUsername {
			t.Fatalf("bad username length %d", len(user))
		}
		// Anything we accept, pion accepts too.
		m := &stun.Message{Raw: append([]byte(nil), p...)}
		if err := m.Decode(); err != nil {
			return // we are more lenient about trailing bytes
		}
		var u stun.Username
		if err := u.GetFrom(m); err != nil || string(u) != string(user) {
			t.Fatalf("pion disagrees: %q vs %q (%v)", u, user, err)
		}
	})
}
