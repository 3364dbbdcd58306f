//go:build unix

package main

import "syscall"

// fileLimit returns the process's RLIMIT_NOFILE, soft and hard. Go raises
// the soft limit to the hard one when a program starts (since Go 1.19), so
// the soft limit is what this process may open: every client connection,
// origin leg and listener holds one.
func fileLimit() (soft, hard uint64, err error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, 0, err
	}
	return uint64(l.Cur), uint64(l.Max), nil
}
