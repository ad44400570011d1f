// Copyright 2026 Switchyard authors. Licensed under the Apache License,
// Version 2.0, as the rest of this package (see LICENSE). Part of the
// Switchyard patch: see PATCH.md.

//go:build linux

package netpoll

import (
	"syscall"
	"unsafe"
)

// The calls below never block (non-blocking sockets, a non-blocking
// listener), so they are made as raw system calls: a call through package
// syscall enters the scheduler's syscall state, which wakes the runtime's
// sysmon thread when it sleeps and resets its polling to every 20 µs. On a
// gateway that was a few context switches per accepted connection.

// acceptInherits: a socket rawAccept returns is non-blocking and, on
// Linux, inherits the listener's TCP_NODELAY (the kernel clones the
// listening socket's options into it), so a listener with TCP_NODELAY
// set needs no fcntl and no setsockopt per accepted connection.
const acceptInherits = true

// rawAccept is accept4(fd, SOCK_NONBLOCK|SOCK_CLOEXEC).
func rawAccept(fd int) (int, syscall.Sockaddr, error) {
	var rsa syscall.RawSockaddrAny
	l := uint32(syscall.SizeofSockaddrAny)
	r, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&l)),
		syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, nil, e
	}
	return int(r), rawToSockaddr(&rsa), nil
}

// rawToSockaddr is package syscall's anyToSockaddr for the families a
// listener accepts (nil for any other).
func rawToSockaddr(rsa *syscall.RawSockaddrAny) syscall.Sockaddr {
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		pp := (*syscall.RawSockaddrInet4)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&pp.Port))
		return &syscall.SockaddrInet4{Port: int(p[0])<<8 + int(p[1]), Addr: pp.Addr}
	case syscall.AF_INET6:
		pp := (*syscall.RawSockaddrInet6)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&pp.Port))
		return &syscall.SockaddrInet6{Port: int(p[0])<<8 + int(p[1]), ZoneId: pp.Scope_id, Addr: pp.Addr}
	case syscall.AF_UNIX:
		pp := (*syscall.RawSockaddrUnix)(unsafe.Pointer(rsa))
		n := 0
		for n < len(pp.Path) && pp.Path[n] != 0 {
			n++
		}
		name := make([]byte, n)
		for i := range name {
			name[i] = byte(pp.Path[i])
		}
		return &syscall.SockaddrUnix{Name: string(name)}
	}
	return nil
}

// rawSetNonblock is fcntl(fd, F_SETFL, flags|O_NONBLOCK).
func rawSetNonblock(fd int) error {
	flags, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFL, 0)
	if e != 0 {
		return e
	}
	if flags&syscall.O_NONBLOCK != 0 {
		return nil
	}
	if _, _, e = syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_SETFL, flags|syscall.O_NONBLOCK); e != 0 {
		return e
	}
	return nil
}

// setTCPNoDelay sets TCP_NODELAY.
func setTCPNoDelay(fd int, b bool) error {
	v := int32(boolint(b))
	_, _, e := syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY, uintptr(unsafe.Pointer(&v)), 4, 0)
	if e != 0 {
		return e
	}
	return nil
}
