package amf0

import (
	"encoding/binary"
	"math"
)

// Decode decodes one value from the start of b and returns it with the
// number of bytes it used.
func Decode(b []byte) (any, int, error) {
	d := decoder{b: b}
	v, err := d.value(0)
	if err != nil {
		return nil, d.off, err
	}
	return v, d.off, nil
}

// DecodeAll decodes consecutive values until b is used up, as in the body
// of a command message.
func DecodeAll(b []byte) ([]any, error) {
	d := decoder{b: b}
	var vals []any
	for d.off < len(d.b) {
		if len(vals) >= MaxElements {
			return vals, d.fail(ErrTooManyElements)
		}
		v, err := d.value(0)
		if err != nil {
			return vals, err
		}
		vals = append(vals, v)
	}
	return vals, nil
}

type decoder struct {
	b   []byte
	off int
}

func (d *decoder) fail(err error) error { return &DecodeError{Offset: d.off, Err: err} }

func (d *decoder) need(n int) error {
	if n < 0 || len(d.b)-d.off < n {
		return d.fail(ErrTruncated)
	}
	return nil
}

func (d *decoder) u8() (byte, error) {
	if err := d.need(1); err != nil {
		return 0, err
	}
	d.off++
	return d.b[d.off-1], nil
}

func (d *decoder) u16() (uint16, error) {
	if err := d.need(2); err != nil {
		return 0, err
	}
	d.off += 2
	return binary.BigEndian.Uint16(d.b[d.off-2:]), nil
}

func (d *decoder) u32() (uint32, error) {
	if err := d.need(4); err != nil {
		return 0, err
	}
	d.off += 4
	return binary.BigEndian.Uint32(d.b[d.off-4:]), nil
}

func (d *decoder) number() (float64, error) {
	if err := d.need(8); err != nil {
		return 0, err
	}
	d.off += 8
	return math.Float64frombits(binary.BigEndian.Uint64(d.b[d.off-8:])), nil
}

func (d *decoder) str(n int) (string, error) {
	if err := d.need(n); err != nil {
		return "", err
	}
	d.off += n
	return string(d.b[d.off-n : d.off]), nil
}

// shortString reads a UTF-8 string with a 16-bit length (no marker).
func (d *decoder) shortString() (string, error) {
	n, err := d.u16()
	if err != nil {
		return "", err
	}
	return d.str(int(n))
}

func (d *decoder) value(depth int) (any, error) {
	start := d.off
	m, err := d.u8()
	if err != nil {
		return nil, err
	}
	switch m {
	case MarkerNumber:
		return d.number()
	case MarkerBoolean:
		b, err := d.u8()
		return b != 0, err
	case MarkerString:
		return d.shortString()
	case MarkerLongString:
		n, err := d.u32()
		if err != nil {
			return nil, err
		}
		if uint64(n) > uint64(len(d.b)-d.off) {
			return nil, d.fail(ErrTruncated)
		}
		return d.str(int(n))
	case MarkerNull:
		return nil, nil
	case MarkerUndefined:
		return Undefined{}, nil
	case MarkerObject:
		if depth >= MaxDepth {
			return nil, &DecodeError{Offset: start, Err: ErrTooDeep}
		}
		props, err := d.properties(depth)
		return Object(props), err
	case MarkerECMAArray:
		if depth >= MaxDepth {
			return nil, &DecodeError{Offset: start, Err: ErrTooDeep}
		}
		// The count is a hint that encoders get wrong; the object end
		// marker terminates the array.
		if _, err := d.u32(); err != nil {
			return nil, err
		}
		props, err := d.properties(depth)
		return ECMAArray(props), err
	case MarkerStrictArray:
		if depth >= MaxDepth {
			return nil, &DecodeError{Offset: start, Err: ErrTooDeep}
		}
		n, err := d.u32()
		if err != nil {
			return nil, err
		}
		if n > MaxElements {
			return nil, d.fail(ErrTooManyElements)
		}
		// Every element takes at least one byte.
		if int(n) > len(d.b)-d.off {
			return nil, d.fail(ErrTruncated)
		}
		arr := make([]any, 0, n)
		for i := uint32(0); i < n; i++ {
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		return arr, nil
	case MarkerDate:
		ms, err := d.number()
		if err != nil {
			return nil, err
		}
		tz, err := d.u16()
		return Date{Millis: ms, Timezone: int16(tz)}, err
	case MarkerObjectEnd:
		return nil, &DecodeError{Offset: start, Err: ErrUnexpectedEnd}
	default:
		return nil, &DecodeError{Offset: start, Err: ErrUnknownMarker}
	}
}

// properties reads key/value pairs up to and including the object end
// marker (an empty key followed by 0x09).
func (d *decoder) properties(depth int) ([]Property, error) {
	var props []Property
	for {
		key, err := d.shortString()
		if err != nil {
			return nil, err
		}
		if key == "" {
			if err := d.need(1); err != nil {
				return nil, err
			}
			if d.b[d.off] == MarkerObjectEnd {
				d.off++
				return props, nil
			}
		}
		if len(props) >= MaxElements {
			return nil, d.fail(ErrTooManyElements)
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		props = append(props, Property{Key: key, Value: v})
	}
}
