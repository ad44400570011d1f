// Copyright 2026 Switchyard authors. Licensed under the Apache License,
// Version 2.0, as the rest of this package (see LICENSE). Part of the
// Switchyard patch: see PATCH.md.

//go:build !linux

package netpoll

import "syscall"

// Elsewhere the calls of sys_raw_linux.go are upstream's.

func rawAccept(fd int) (int, syscall.Sockaddr, error) { return syscall.Accept(fd) }

func rawSetNonblock(fd int) error { return syscall.SetNonblock(fd, true) }

func setTCPNoDelay(fd int, b bool) (err error) {
	return syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, boolint(b))
}

// acceptInherits is false: Accept here is not accept4(SOCK_NONBLOCK), and
// whether TCP_NODELAY is inherited is not checked on these systems.
const acceptInherits = false
