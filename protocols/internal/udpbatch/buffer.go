package udpbatch

import (
	"errors"
	"net"
)

var errUnknownSize = errors.New("udpbatch: socket buffer size unknown on this platform")

// SetBuffers asks for size-byte receive and send buffers on uc and returns
// what the kernel granted (on Linux capped by net.core.rmem_max and
// net.core.wmem_max). A size of 0 or less leaves the buffers as they are
// and only reports them. Where the sizes cannot be read back, the granted
// sizes are reported as size.
func SetBuffers(uc *net.UDPConn, size int) (rcv, snd int, err error) {
	if size > 0 {
		if err := uc.SetReadBuffer(size); err != nil {
			return 0, 0, err
		}
		if err := uc.SetWriteBuffer(size); err != nil {
			return 0, 0, err
		}
	}
	rcv, snd, err = bufferSizes(uc)
	if errors.Is(err, errUnknownSize) {
		return size, size, nil
	}
	return rcv, snd, err
}
