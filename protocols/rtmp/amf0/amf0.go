// Package amf0 encodes and decodes AMF0, the value format of RTMP command and
// data messages.
//
// Values map to Go types as follows:
//
//	number        float64
//	boolean       bool
//	string        string (long strings too; Append picks the marker by length)
//	object        Object (ordered properties)
//	null          nil
//	undefined     Undefined
//	ECMA array    ECMAArray (ordered properties)
//	strict array  []any
//	date          Date
//
// The decoder reads untrusted bytes: it never panics, bounds nesting depth
// and element counts, and reports errors as *DecodeError values that wrap one
// of the package's sentinel errors and carry the byte offset.
package amf0

import (
	"errors"
	"fmt"
)

// Type markers of AMF0 (AMF0 specification, section 2.1).
const (
	MarkerNumber      = 0x00
	MarkerBoolean     = 0x01
	MarkerString      = 0x02
	MarkerObject      = 0x03
	MarkerMovieClip   = 0x04
	MarkerNull        = 0x05
	MarkerUndefined   = 0x06
	MarkerReference   = 0x07
	MarkerECMAArray   = 0x08
	MarkerObjectEnd   = 0x09
	MarkerStrictArray = 0x0a
	MarkerDate        = 0x0b
	MarkerLongString  = 0x0c
)

// Limits of the decoder.
const (
	// MaxDepth is the deepest nesting of objects and arrays accepted.
	MaxDepth = 32
	// MaxElements is the largest number of properties or elements accepted
	// in one object or array.
	MaxElements = 65536
)

// Errors wrapped by DecodeError and returned by Append.
var (
	ErrTruncated        = errors.New("amf0: truncated value")
	ErrUnknownMarker    = errors.New("amf0: unsupported type marker")
	ErrTooDeep          = errors.New("amf0: nesting too deep")
	ErrTooManyElements  = errors.New("amf0: too many elements")
	ErrUnexpectedEnd    = errors.New("amf0: object end outside an object")
	ErrUnsupportedValue = errors.New("amf0: Go value has no AMF0 encoding")
	ErrStringTooLong    = errors.New("amf0: string too long")
)

// DecodeError says what went wrong and at which byte offset of the input.
type DecodeError struct {
	Offset int
	Err    error
}

func (e *DecodeError) Error() string { return fmt.Sprintf("%v at offset %d", e.Err, e.Offset) }

// Unwrap returns the sentinel error.
func (e *DecodeError) Unwrap() error { return e.Err }

// Property is one key/value pair of an Object or ECMAArray.
type Property struct {
	Key   string
	Value any
}

// Object is an anonymous AMF0 object. Property order is kept, because some
// servers and clients compare encoded bytes or expect a given order.
type Object []Property

// ECMAArray is an associative array; it encodes like Object with a count.
type ECMAArray []Property

// Undefined is the AMF0 undefined value.
type Undefined struct{}

// Date is an AMF0 date: milliseconds since the Unix epoch and a time zone
// offset that the specification says must be ignored (kept for round trips).
type Date struct {
	Millis   float64
	Timezone int16
}

// Get returns the value of the first property named key.
func (o Object) Get(key string) (any, bool) { return properties(o).get(key) }

// String returns the string value of key, or "" when it is absent or not a string.
func (o Object) String(key string) string {
	v, _ := o.Get(key)
	s, _ := v.(string)
	return s
}

// Number returns the numeric value of key and whether it is present as a number.
func (o Object) Number(key string) (float64, bool) {
	v, _ := o.Get(key)
	n, ok := v.(float64)
	return n, ok
}

// Set replaces the first property named key, or appends it.
func (o Object) Set(key string, v any) Object {
	for i := range o {
		if o[i].Key == key {
			o[i].Value = v
			return o
		}
	}
	return append(o, Property{key, v})
}

// Get returns the value of the first property named key.
func (a ECMAArray) Get(key string) (any, bool) { return properties(a).get(key) }

type properties []Property

func (p properties) get(key string) (any, bool) {
	for _, kv := range p {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}
