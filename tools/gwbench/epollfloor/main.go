//go:build linux

package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"syscall"

	"github.com/switchyard-gw/switchyard/internal/rawio"
	"github.com/switchyard-gw/switchyard/protocol"
	"golang.org/x/sys/unix"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:7403", "IPv4 address to accept on")
	flag.Parse()
	// One thread does everything; the blocking epoll_wait is the only
	// call made through the scheduler, every other one is raw.
	runtime.GOMAXPROCS(1)
	runtime.LockOSThread()
	if err := run(*listen); err != nil {
		fmt.Fprintln(os.Stderr, "epollfloor:", err)
		os.Exit(1)
	}
}

func run(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return fmt.Errorf("listen %q: want an IPv4 address and port", addr)
	}
	lfd, err := listen(ap)
	if err != nil {
		return err
	}
	return loop(lfd)
}

// loop serves the listener lfd until an error.
func loop(lfd int) error {
	p, err := protocol.Marshal(&protocol.Welcome{Session: "floor", HB: 30, MaxFrame: protocol.DefaultMaxFrame, Node: "epollfloor"})
	if err != nil {
		return err
	}
	welcome := protocol.AppendFrame(nil, protocol.TypeWelcome, 0, 0, p)
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, lfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(lfd)}); err != nil {
		return err
	}
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, 4096)
	for {
		n, err := unix.EpollWait(epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		for _, ev := range events[:n] {
			if fd := int(ev.Fd); fd != lfd {
				serve(fd, buf, welcome)
				continue
			}
			for {
				fd, errno := raw(unix.SYS_ACCEPT4, lfd, 0, 0, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
				if errno != 0 {
					break // EAGAIN: the queue is empty (or an error: try at the next event)
				}
				if !serve(int(fd), buf, welcome) {
					continue
				}
				_ = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, int(fd), &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
			}
		}
	}
}

// listen opens the listener as the gateway's is opened: non-blocking,
// TCP_NODELAY inherited by what it accepts, TCP_DEFER_ACCEPT.
func listen(ap netip.AddrPort) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	for _, o := range [][3]int{
		{unix.SOL_SOCKET, unix.SO_REUSEADDR, 1},
		{unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
		{unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 1},
	} {
		if err := unix.SetsockoptInt(fd, o[0], o[1], o[2]); err != nil {
			return -1, err
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return -1, err
	}
	return fd, unix.Listen(fd, 65535)
}

// serve reads what the socket holds: a HELLO is answered with the fixed
// WELCOME, the end of the stream (or an error) closes the socket. It
// reports whether the socket is still open.
func serve(fd int, buf, welcome []byte) bool {
	n, err := rawio.Read(fd, buf)
	switch {
	case err == syscall.EAGAIN:
		return true
	case err != nil || n == 0:
		raw(unix.SYS_CLOSE, fd, 0, 0, 0)
		return false
	}
	if n > protocol.LengthSize && protocol.Type(buf[protocol.LengthSize]) == protocol.TypeHello {
		_, _ = rawio.Write(fd, welcome)
	}
	return true
}

// raw makes a system call that cannot block (the sockets are
// non-blocking) without the scheduler's syscall state, as internal/rawio
// does for reads and writes: here accept4 and close.
func raw(trap uintptr, fd int, a1, a2, a3 uintptr) (uintptr, syscall.Errno) {
	r, _, e := syscall.RawSyscall6(trap, uintptr(fd), a1, a2, a3, 0, 0)
	return r, e
}
