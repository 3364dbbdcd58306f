// Package handshake implements the RTMP handshake: the simple (unsigned) one
// for both ends of a connection, and the complex (signed) one for the server
// end.
//
// The simple handshake is what the RTMP specification describes: C0/S0 carry
// the version (3), C1/S1 are 1536 bytes of time, zero and random data, and
// C2/S2 echo the peer's C1/S1. FFmpeg, OBS, nginx-rtmp and SRS all accept it
// when the version field of C1/S1 is zero.
//
// The complex handshake of Flash Player 9 and later signs C1/S1 and S2 with
// HMAC-SHA256 digests (see complex.go). Server answers it when the client
// sends a signed C1, and the simple handshake otherwise. Client always sends
// the simple one, which every origin accepts.
package handshake

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version is the only RTMP version this package speaks.
const Version = 3

// Size is the length of C1, C2, S1 and S2.
const Size = 1536

// Errors returned by Server and Client.
var (
	ErrVersion = errors.New("handshake: unsupported RTMP version")
	ErrShort   = errors.New("handshake: connection closed during handshake")
)

// Kind is which handshake a connection used.
type Kind uint8

const (
	// Simple is the unsigned handshake: S1 has a zero version, S2 echoes C1.
	Simple Kind = iota
	// Complex is the signed handshake: S1 and S2 carry digests derived from
	// the client's C1.
	Complex
)

func (k Kind) String() string {
	if k == Complex {
		return "complex"
	}
	return "simple"
}

// Server runs the server side of the handshake on rw: it reads C0 and C1,
// answers S0, S1 and S2, and reads C2. It returns the kind of handshake it
// answered (Simple when it failed before answering).
//
// A C1 with a non-zero version and a valid digest gets the complex answer;
// any other C1 (version zero, or a digest that does not verify, as some
// encoders send) gets the simple one. C2 is not checked: clients differ in
// what they send there, and neither nginx-rtmp nor SRS rejects any. The
// caller sets deadlines on the connection.
func Server(rw io.ReadWriter, epoch uint32) (Kind, error) {
	var c0c1 [1 + Size]byte
	if err := readFull(rw, c0c1[:1], "C0"); err != nil {
		return Simple, err
	}
	if c0c1[0] != Version {
		return Simple, fmt.Errorf("%w: C0 is %#x", ErrVersion, c0c1[0])
	}
	if err := readFull(rw, c0c1[1:], "C1"); err != nil {
		return Simple, err
	}
	c1 := c0c1[1:]
	out := make([]byte, 1+2*Size)
	out[0] = Version
	s1, s2 := out[1:1+Size], out[1+Size:]
	kind := Complex
	if !fillComplex(s1, s2, c1, epoch) {
		kind = Simple
		fillS1(s1, epoch)
		copy(s2, c1)
	}
	if _, err := rw.Write(out); err != nil {
		return kind, fmt.Errorf("handshake: writing S0S1S2: %w", err)
	}
	return kind, readFull(rw, s1, "C2")
}

// Client runs the client side of the handshake on rw: it sends C0 and C1,
// reads S0 and S1, sends C2 (echoing S1) and reads S2, whose content is not
// checked.
func Client(rw io.ReadWriter, epoch uint32) error {
	buf := make([]byte, 1+Size)
	buf[0] = Version
	fillS1(buf[1:], epoch)
	if _, err := rw.Write(buf); err != nil {
		return fmt.Errorf("handshake: writing C0C1: %w", err)
	}
	if err := readFull(rw, buf[:1], "S0"); err != nil {
		return err
	}
	if buf[0] != Version {
		return fmt.Errorf("%w: S0 is %#x", ErrVersion, buf[0])
	}
	if err := readFull(rw, buf[1:], "S1"); err != nil {
		return err
	}
	if _, err := rw.Write(buf[1:]); err != nil {
		return fmt.Errorf("handshake: writing C2: %w", err)
	}
	return readFull(rw, buf[1:], "S2")
}

// fillS1 writes a C1/S1 body: time, four zero bytes (which selects the
// simple handshake at the peer), then random bytes.
func fillS1(b []byte, epoch uint32) {
	binary.BigEndian.PutUint32(b[0:4], epoch)
	clear(b[4:8])
	fillRandom(b[8:])
}

func readFull(r io.Reader, b []byte, what string) error {
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: reading %s", ErrShort, what)
		}
		return fmt.Errorf("handshake: reading %s: %w", what, err)
	}
	return nil
}
