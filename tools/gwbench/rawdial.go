package main

import (
	"errors"
	"net"
	"strconv"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
	"golang.org/x/sys/unix"
)

// rawHandshake opens a blocking socket with plain system calls (socket,
// setsockopt, bind, connect, write, read, close: no netpoller, no
// goroutine parking), does HELLO → WELCOME and closes. It is the
// handshake scenario's lean client; the driver shares the box with the
// target, so every microsecond it saves goes to the target.
// With reset set, the socket closes with an RST (SO_LINGER 0): no FIN
// exchange and no TIME_WAIT, which takes the teardown's kernel work out of
// the measurement.
func rawHandshake(dst unix.SockaddrInet4, src *net.TCPAddr, hello []byte, buf []byte, timeout time.Duration, reset bool) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if reset {
		if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
			return err
		}
	}
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	if src != nil {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1); err != nil {
			return err
		}
		sa := &unix.SockaddrInet4{}
		copy(sa.Addr[:], src.IP.To4())
		if err := unix.Bind(fd, sa); err != nil {
			return err
		}
	}
	if err := unix.Connect(fd, &dst); err != nil {
		return err
	}
	if _, err := unix.Write(fd, hello); err != nil {
		return err
	}
	return readWelcome(fd, buf)
}

var errShortRead = errors.New("gwbench: connection closed before WELCOME")

// readWelcome reads one frame from a blocking fd and checks it is WELCOME.
func readWelcome(fd int, buf []byte) error {
	n := 0
	for {
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if m == 0 {
			return errShortRead
		}
		n += m
		f, _, err := protocol.Decode(buf[:n], len(buf))
		if err == protocol.ErrIncomplete {
			if n == len(buf) {
				return protocol.ErrFrameTooLarge
			}
			continue
		}
		if err != nil {
			return err
		}
		switch f.Type {
		case protocol.TypeWelcome:
			return nil
		case protocol.TypeError:
			return &serverError{errorCode(f.Payload)}
		}
		return errUnexpected
	}
}

// sockaddr parses a "127.0.0.1:port" address.
func sockaddr(addr string) (unix.SockaddrInet4, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return unix.SockaddrInet4{}, err
	}
	ip := net.ParseIP(host).To4()
	p, err := strconv.Atoi(port)
	if ip == nil || err != nil {
		return unix.SockaddrInet4{}, errors.New("gwbench: want an IPv4 host:port, got " + addr)
	}
	sa := unix.SockaddrInet4{Port: p}
	copy(sa.Addr[:], ip)
	return sa, nil
}
