package amf0

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Append appends the AMF0 encoding of v to b. Integers of Go's integer types
// encode as numbers; strings longer than 65535 bytes encode as long strings.
// A value of any other type yields an error wrapping ErrUnsupportedValue.
func Append(b []byte, v any) ([]byte, error) {
	return appendValue(b, v, 0)
}

// AppendAll appends the encodings of vs in order.
func AppendAll(b []byte, vs ...any) ([]byte, error) {
	var err error
	for _, v := range vs {
		if b, err = appendValue(b, v, 0); err != nil {
			return b, err
		}
	}
	return b, nil
}

func appendNumber(b []byte, f float64) []byte {
	b = append(b, MarkerNumber)
	return binary.BigEndian.AppendUint64(b, math.Float64bits(f))
}

func appendValue(b []byte, v any, depth int) ([]byte, error) {
	if depth > MaxDepth {
		return b, ErrTooDeep
	}
	switch v := v.(type) {
	case nil:
		return append(b, MarkerNull), nil
	case Undefined:
		return append(b, MarkerUndefined), nil
	case float64:
		return appendNumber(b, v), nil
	case float32:
		return appendNumber(b, float64(v)), nil
	case int:
		return appendNumber(b, float64(v)), nil
	case int32:
		return appendNumber(b, float64(v)), nil
	case int64:
		return appendNumber(b, float64(v)), nil
	case uint32:
		return appendNumber(b, float64(v)), nil
	case uint64:
		return appendNumber(b, float64(v)), nil
	case bool:
		if v {
			return append(b, MarkerBoolean, 1), nil
		}
		return append(b, MarkerBoolean, 0), nil
	case string:
		if len(v) > math.MaxUint16 {
			if uint64(len(v)) > math.MaxUint32 {
				return b, ErrStringTooLong
			}
			b = append(b, MarkerLongString)
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			return append(b, v...), nil
		}
		b = append(b, MarkerString)
		b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
		return append(b, v...), nil
	case Object:
		b = append(b, MarkerObject)
		return appendProperties(b, v, depth)
	case ECMAArray:
		b = append(b, MarkerECMAArray)
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		return appendProperties(b, v, depth)
	case []any:
		b = append(b, MarkerStrictArray)
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		var err error
		for _, e := range v {
			if b, err = appendValue(b, e, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case Date:
		b = append(b, MarkerDate)
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(v.Millis))
		return binary.BigEndian.AppendUint16(b, uint16(v.Timezone)), nil
	default:
		return b, fmt.Errorf("%w: %T", ErrUnsupportedValue, v)
	}
}

func appendProperties(b []byte, props []Property, depth int) ([]byte, error) {
	var err error
	for _, p := range props {
		if len(p.Key) > math.MaxUint16 {
			return b, ErrStringTooLong
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(p.Key)))
		b = append(b, p.Key...)
		if b, err = appendValue(b, p.Value, depth+1); err != nil {
			return b, err
		}
	}
	return append(b, 0, 0, MarkerObjectEnd), nil
}
