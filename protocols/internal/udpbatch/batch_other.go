//go:build !linux

package udpbatch

import "net"

// Elsewhere than Linux, every read and write takes one datagram.

type sysReader = *noReader

type sysWriter = *noWriter

type noReader struct{}

func newSysReader(*net.UDPConn, []Msg) *noReader { return nil }

func (*noReader) read() (int, error) { return 0, nil }

func (*noReader) dropped() uint64 { return 0 }

func (*noReader) each(func(int) bool) error { return nil }

type noWriter struct{}

func newSysWriter(*net.UDPConn, int, bool) *noWriter { return nil }

func (*noWriter) write([]Msg) (int, int, error) { return 0, 0, nil }

func bufferSizes(*net.UDPConn) (int, int, error) { return 0, 0, errUnknownSize }

func newGROReader(*net.UDPConn, []Msg) *noReader { return nil }

func (*noWriter) enableGSO() bool { return false }

func (*noWriter) segmenting() bool { return false }

func (*noWriter) fellBackGSO() bool { return false }

func (*noReader) coalescing() bool { return false }
