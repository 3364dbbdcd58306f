package webrtc

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/pion/stun/v4"
)

// testPwd is the origin's ICE password of the sessions relay tests store.
const testPwd = "pwd"

// bindingRequest builds a Binding request with pion/stun, as an ICE agent
// does, signed with testPwd.
func bindingRequest(t testing.TB, user string) []byte {
	t.Helper()
	return bindingRequestPwd(t, user, testPwd)
}

// bindingRequestPwd builds a Binding request signed with pwd, or without a
// MESSAGE-INTEGRITY when pwd is empty.
func bindingRequestPwd(t testing.TB, user, pwd string) []byte {
	t.Helper()
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest, stun.NewUsername(user)}
	if pwd != "" {
		setters = append(setters, stun.NewShortTermIntegrity(pwd))
	}
	m, err := stun.Build(append(setters, stun.Fingerprint)...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

// rfc5769Request is the sample request of RFC 5769 §2.1: username
// "evtj:h6vY", password rfc5769Pwd, SOFTWARE, PRIORITY, ICE-CONTROLLED,
// MESSAGE-INTEGRITY and FINGERPRINT.
var rfc5769Request = []byte{
	0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42,
	0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
	0x80, 0x22, 0x00, 0x10, // SOFTWARE
	0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74,
	0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff, // PRIORITY
	0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, // ICE-CONTROLLED
	0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, // USERNAME
	0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY
	0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
	0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2,
	0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf, // FINGERPRINT
}

const rfc5769Pwd = "VOkJxbRl1RmTxUk/WvJxBt"

func TestSTUNCheckIntegrityRFC5769(t *testing.T) {
	if user, _, err := STUNUsername(rfc5769Request); err != nil || string(user) != "evtj:h6vY" {
		t.Fatalf("username %q, %v", user, err)
	}
	if err := STUNCheckIntegrity(rfc5769Request, []byte(rfc5769Pwd)); err != nil {
		t.Fatalf("RFC 5769 sample request: %v", err)
	}
	// pion agrees on the vector.
	m := &stun.Message{Raw: append([]byte(nil), rfc5769Request...)}
	if err := m.Decode(); err != nil {
		t.Fatal(err)
	}
	if err := stun.NewShortTermIntegrity(rfc5769Pwd).Check(m); err != nil {
		t.Fatalf("pion: %v", err)
	}
	if err := STUNCheckIntegrity(rfc5769Request, []byte(rfc5769Pwd+"x")); !errors.Is(err, ErrSTUNIntegrity) {
		t.Fatalf("wrong password: %v", err)
	}
	// Any change to the covered bytes breaks it: the message type, the
	// transaction id, SOFTWARE, the username.
	for _, i := range []int{1, 10, 30, 64} {
		p := append([]byte(nil), rfc5769Request...)
		p[i] ^= 0x02
		if err := STUNCheckIntegrity(p, []byte(rfc5769Pwd)); !errors.Is(err, ErrSTUNIntegrity) {
			t.Errorf("byte %d changed: %v", i, err)
		}
	}
	// The FINGERPRINT after MESSAGE-INTEGRITY is not covered.
	p := append([]byte(nil), rfc5769Request...)
	p[len(p)-1] ^= 0xff
	if err := STUNCheckIntegrity(p, []byte(rfc5769Pwd)); err != nil {
		t.Fatalf("fingerprint changed: %v", err)
	}
}

func TestSTUNCheckIntegrity(t *testing.T) {
	signed := bindingRequestPwd(t, "ans1:off1", "secret-pwd")
	if err := STUNCheckIntegrity(signed, []byte("secret-pwd")); err != nil {
		t.Fatalf("pion-signed request: %v", err)
	}
	// Without FINGERPRINT, and with bytes trailing the message.
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername("a:b"), stun.NewShortTermIntegrity("k"))
	if err != nil {
		t.Fatal(err)
	}
	if err := STUNCheckIntegrity(append(m.Raw, 0, 0, 0, 0), []byte("k")); err != nil {
		t.Fatalf("no fingerprint: %v", err)
	}
	// A MESSAGE-INTEGRITY of the wrong size.
	short := append([]byte(nil), m.Raw...)
	binary.BigEndian.PutUint16(short[len(short)-22:], 16)
	binary.BigEndian.PutUint16(short[2:4], uint16(len(short)-20-4))
	short = short[:len(short)-4]
	for _, tc := range []struct {
		name string
		p    []byte
		key  string
		want error
	}{
		{"wrong password", signed, "other", ErrSTUNIntegrity},
		{"no integrity", bindingRequestPwd(t, "ans1:off1", ""), "secret-pwd", ErrSTUNNoIntegrity},
		{"integrity too short", short, "k", ErrSTUNIntegrity},
		{"truncated", truncated22, "k", ErrSTUNLength},
		{"empty", nil, "k", ErrSTUNShort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := STUNCheckIntegrity(tc.p, []byte(tc.key)); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
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
	f.Add(bindingRequestPwd(f, "ans1:off1", ""))
	f.Add(rfc5769Request)
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
		// A message we find signed with testPwd, pion finds signed too.
		if STUNCheckIntegrity(p, []byte(testPwd)) == nil {
			if err := stun.NewShortTermIntegrity(testPwd).Check(m); err != nil {
				t.Fatalf("integrity: we accept, pion says %v", err)
			}
		}
	})
}
