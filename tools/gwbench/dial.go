package main

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// spread picks local source addresses 127.0.0.(first) … 127.0.0.(first+n-1)
// round-robin, so that every (source, destination) pair has its own
// ephemeral port range and TIME_WAIT sockets of one source do not block the
// others. n = 0 lets the kernel choose (no bind).
type spread struct {
	first int // last octet of the first source address, 2 by default
	n     int // number of source addresses
}

// addr returns the source address for connection i, or nil without spreading.
func (s spread) addr(i int) *net.TCPAddr {
	if s.n <= 0 {
		return nil
	}
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(s.first+i%s.n))}
}

// validate checks that the addresses stay in 127.0.0.1–127.0.0.254.
func (s spread) validate() error {
	if s.n < 0 || s.n > 0 && (s.first < 1 || s.first+s.n-1 > 254) {
		return fmt.Errorf("gwbench: source spread 127.0.0.%d +%d leaves 127.0.0.1–254", s.first, s.n)
	}
	return nil
}

// dialer returns a dialer bound to the source address of connection i. The
// socket asks for IP_BIND_ADDRESS_NO_PORT so that the port is chosen at
// connect time against the full 4-tuple (and TIME_WAIT reuse applies).
func (s spread) dialer(i int, timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout, KeepAlive: -1}
	if a := s.addr(i); a != nil {
		d.LocalAddr = a
		d.Control = noPortBind
	}
	return d
}

func noPortBind(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// dial connects to addr from the source address of connection i.
func (s spread) dial(ctx context.Context, i int, addr string) (*net.TCPConn, error) {
	c, err := s.dialer(i, 5*time.Second).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// fdShares splits n connections over processes holding at most perProc
// each, as evenly as possible.
func fdShares(n, perProc int) []int {
	if n <= 0 {
		return nil
	}
	if perProc <= 0 {
		perProc = n
	}
	procs := (n + perProc - 1) / perProc
	out := make([]int, procs)
	for i := range out {
		out[i] = n / procs
		if i < n%procs {
			out[i]++
		}
	}
	return out
}
