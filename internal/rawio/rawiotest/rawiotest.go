// Package rawiotest has what the tests of both ends of a link share: a
// loopback TCP pair, and a connection whose process was kept off the CPU
// past its read deadline.
package rawiotest

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
)

// Pair returns the two ends of one loopback TCP connection, the dialed
// and the accepted; both are closed when the test ends.
func Pair(t testing.TB) (dialed, accepted net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialed, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dialed.Close() })
	accepted, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { accepted.Close() })
	return dialed, accepted
}

// Late is the connection of a process that was kept off the CPU past its
// read deadline: Go's poller reports the deadline's timer first, although
// the peer's bytes may be waiting. Its next Reads reads fail with
// os.ErrDeadlineExceeded; then it reads as the connection it wraps.
//
// Late is a syscall.Conn when that connection is one, so that
// rawio.Waiting looks into the socket beneath it.
type Late struct {
	net.Conn
	Reads int
}

func (c *Late) Read(p []byte) (int, error) {
	if c.Reads > 0 {
		c.Reads--
		return 0, os.ErrDeadlineExceeded
	}
	return c.Conn.Read(p)
}

// SyscallConn is the wrapped connection's.
func (c *Late) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}
