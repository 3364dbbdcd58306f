package amf0

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeVectors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want any
	}{
		{"number", []byte{0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0}, 1.0},
		{"true", []byte{0x01, 0x01}, true},
		{"false", []byte{0x01, 0x00}, false},
		{"string", []byte{0x02, 0x00, 0x03, 'a', 'b', 'c'}, "abc"},
		{"empty string", []byte{0x02, 0x00, 0x00}, ""},
		{"long string", []byte{0x0c, 0, 0, 0, 2, 'h', 'i'}, "hi"},
		{"null", []byte{0x05}, nil},
		{"undefined", []byte{0x06}, Undefined{}},
		{"object", []byte{0x03, 0x00, 0x01, 'k', 0x05, 0x00, 0x00, 0x09}, Object{{"k", nil}}},
		{"empty object", []byte{0x03, 0x00, 0x00, 0x09}, Object(nil)},
		{"ecma array", []byte{0x08, 0, 0, 0, 1, 0x00, 0x01, 'a', 0x01, 0x01, 0x00, 0x00, 0x09}, ECMAArray{{"a", true}}},
		{"ecma array wrong count", []byte{0x08, 0, 0, 0, 9, 0x00, 0x01, 'a', 0x01, 0x01, 0x00, 0x00, 0x09}, ECMAArray{{"a", true}}},
		{"strict array", []byte{0x0a, 0, 0, 0, 2, 0x05, 0x01, 0x01}, []any{nil, true}},
		{"date", []byte{0x0b, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, Date{Millis: 1, Timezone: -1}},
		{"nested", []byte{0x03, 0x00, 0x01, 'o', 0x03, 0x00, 0x01, 'n', 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x09, 0x00, 0x00, 0x09},
			Object{{"o", Object{{"n", 0.0}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, n, err := Decode(tt.in)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if n != len(tt.in) {
				t.Fatalf("used %d of %d bytes", n, len(tt.in))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	long := strings.Repeat("x", 70000)
	vals := []any{
		0.0, -1.5, math.Inf(1), true, false, "", "connect", long, nil, Undefined{},
		Object{{"app", "live"}, {"tcUrl", "rtmp://h/live"}, {"objectEncoding", 0.0}},
		ECMAArray{{"duration", 0.0}, {"width", 320.0}},
		[]any{1.0, "a", nil, Object{{"x", []any{}}}},
		Date{Millis: 1.7e12, Timezone: 0},
	}
	b, err := AppendAll(nil, vals...)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeAll(b)
	if err != nil {
		t.Fatal(err)
	}
	// Empty collections decode as nil slices; normalise the one we used.
	vals[12] = []any{1.0, "a", nil, Object{{"x", []any{}}}}
	if !reflect.DeepEqual(got, vals) {
		t.Fatalf("round trip mismatch:\n got %#v\nwant %#v", got[:len(got)-1], vals[:len(vals)-1])
	}
	// The long string used the long string marker.
	b2, _ := Append(nil, long)
	if b2[0] != MarkerLongString {
		t.Fatalf("marker %#x for a %d-byte string", b2[0], len(long))
	}
}

func TestEncodeIntegers(t *testing.T) {
	for _, v := range []any{int(3), int32(3), int64(3), uint32(3), uint64(3), float32(3)} {
		b, err := Append(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := Decode(b)
		if err != nil || got != 3.0 {
			t.Fatalf("%T: got %v, %v", v, got, err)
		}
	}
	if _, err := Append(nil, struct{}{}); !errors.Is(err, ErrUnsupportedValue) {
		t.Fatalf("struct: %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	deep := bytes.Repeat([]byte{0x0a, 0, 0, 0, 1}, MaxDepth+2)
	tests := []struct {
		name   string
		in     []byte
		want   error
		offset int
	}{
		{"empty", nil, ErrTruncated, 0},
		{"short number", []byte{0x00, 1, 2}, ErrTruncated, 1},
		{"short bool", []byte{0x01}, ErrTruncated, 1},
		{"short string length", []byte{0x02, 0x00}, ErrTruncated, 1},
		{"short string body", []byte{0x02, 0x00, 0x05, 'a'}, ErrTruncated, 3},
		{"huge long string", []byte{0x0c, 0xff, 0xff, 0xff, 0xff, 'a'}, ErrTruncated, 5},
		{"unterminated object", []byte{0x03, 0x00, 0x01, 'k', 0x05}, ErrTruncated, 5},
		{"object missing end marker", []byte{0x03, 0x00, 0x00}, ErrTruncated, 3},
		{"object end at top", []byte{0x09}, ErrUnexpectedEnd, 0},
		{"movieclip", []byte{0x04}, ErrUnknownMarker, 0},
		{"reference", []byte{0x07, 0x00, 0x01}, ErrUnknownMarker, 0},
		{"amf3 switch", []byte{0x11}, ErrUnknownMarker, 0},
		{"strict array count too large", []byte{0x0a, 0xff, 0xff, 0xff, 0xff}, ErrTooManyElements, 5},
		{"strict array count beyond input", []byte{0x0a, 0x00, 0x00, 0x10, 0x00, 0x05}, ErrTruncated, 5},
		{"too deep", deep, ErrTooDeep, 5 * MaxDepth},
		{"short date", []byte{0x0b, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrTruncated, 9},
		{"object value error", []byte{0x03, 0x00, 0x01, 'k', 0x0d}, ErrUnknownMarker, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Decode(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			var de *DecodeError
			if !errors.As(err, &de) || de.Offset != tt.offset {
				t.Fatalf("error %v: want offset %d", err, tt.offset)
			}
		})
	}
}

func TestObjectAccessors(t *testing.T) {
	o := Object{{"app", "live"}, {"n", 2.0}}
	if o.String("app") != "live" || o.String("n") != "" || o.String("none") != "" {
		t.Fatal("String")
	}
	if n, ok := o.Number("n"); !ok || n != 2 {
		t.Fatal("Number")
	}
	o = o.Set("app", "x").Set("new", true)
	if o.String("app") != "x" || len(o) != 3 {
		t.Fatalf("Set: %v", o)
	}
}

// FuzzAMF0Decode checks the decoder's contract on any input: it fails only
// with a *DecodeError wrapping one of the package's errors at an offset
// within the input, and what it decodes encodes again into bytes that decode
// to equal values (bit for bit, NaNs too), and that re-encode to the same
// bytes; Decode reads each of those values back with the length Append gave
// it.
func FuzzAMF0Decode(f *testing.F) {
	seed, _ := AppendAll(nil, "connect", 1.0, Object{{"app", "live"}, {"x", ECMAArray{{"a", []any{1.0, nil}}}}}, Date{}, Undefined{})
	f.Add(seed)
	f.Add([]byte{0x0a, 0, 0, 0, 1, 0x0a, 0, 0, 0, 1, 0x05})
	f.Add([]byte{0x0c, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		vals, err := DecodeAll(b)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Offset < 0 || de.Offset > len(b) {
				t.Fatalf("error %v (%T) is not a DecodeError within the %d bytes", err, err, len(b))
			}
			known := false
			for _, e := range []error{ErrTruncated, ErrUnknownMarker, ErrTooDeep, ErrTooManyElements, ErrUnexpectedEnd} {
				known = known || errors.Is(err, e)
			}
			if !known {
				t.Fatalf("error %v wraps none of the package's errors", err)
			}
			return
		}
		enc, err := AppendAll(nil, vals...)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := DecodeAll(enc)
		if err != nil {
			t.Fatalf("decode of re-encoding: %v", err)
		}
		if len(again) != len(vals) {
			t.Fatalf("%d values, then %d", len(vals), len(again))
		}
		for i := range vals {
			if !sameValue(vals[i], again[i]) {
				t.Fatalf("value %d: %#v, then %#v", i, vals[i], again[i])
			}
		}
		if enc2, err := AppendAll(nil, again...); err != nil || !bytes.Equal(enc2, enc) {
			t.Fatalf("re-encoding is not stable: %x, then %x (%v)", enc, enc2, err)
		}
		off := 0
		for i, v := range vals {
			one, _ := Append(nil, v)
			got, n, err := Decode(enc[off:])
			if err != nil || n != len(one) || !sameValue(got, v) {
				t.Fatalf("Decode of value %d: %#v, %d bytes, %v; want %#v, %d bytes", i, got, n, err, v, len(one))
			}
			off += n
		}
	})
}

// sameValue reports whether a and b are the same decoded AMF0 value: the
// same types, numbers with the same bits, properties in the same order.
func sameValue(a, b any) bool {
	switch a := a.(type) {
	case float64:
		b, ok := b.(float64)
		return ok && math.Float64bits(a) == math.Float64bits(b)
	case Date:
		b, ok := b.(Date)
		return ok && math.Float64bits(a.Millis) == math.Float64bits(b.Millis) && a.Timezone == b.Timezone
	case Object:
		b, ok := b.(Object)
		return ok && sameProperties(a, b)
	case ECMAArray:
		b, ok := b.(ECMAArray)
		return ok && sameProperties(a, b)
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !sameValue(a[i], b[i]) {
				return false
			}
		}
		return true
	case nil, bool, string, Undefined:
		return a == b
	default:
		return false
	}
}

func sameProperties(a, b []Property) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || !sameValue(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}
