//go:build !linux

package udpbatch

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// Socket is a UDP socket outside the Go runtime's network poller; only
// Linux has it, elsewhere Detach fails and a Socket is never made.
type Socket struct{}

// Detach fails with errors.ErrUnsupported: keep using uc.
func Detach(uc *net.UDPConn) (*Socket, error) { return nil, errors.ErrUnsupported }

// LocalAddr is nil.
func (*Socket) LocalAddr() net.Addr { return nil }

// SyscallConn fails.
func (*Socket) SyscallConn() (syscall.RawConn, error) { return nil, errors.ErrUnsupported }

// SetReadDeadline fails.
func (*Socket) SetReadDeadline(time.Time) error { return errors.ErrUnsupported }

// Close fails.
func (*Socket) Close() error { return errors.ErrUnsupported }

// ReadFromUDPAddrPort fails.
func (*Socket) ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, errors.ErrUnsupported
}

// WriteToUDPAddrPort fails.
func (*Socket) WriteToUDPAddrPort([]byte, netip.AddrPort) (int, error) {
	return 0, errors.ErrUnsupported
}
