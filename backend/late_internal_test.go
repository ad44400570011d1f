package backend

import (
	"net"
	"os"
	"testing"

	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/internal/rawio"
)

// lateConn is the link's connection of a shard that was kept off the CPU
// past its read deadline: Go's poller reports the deadline's timer first,
// although the gateway's bytes are there.
type lateConn struct {
	*rawio.Conn
	late int
}

// InQueue is how many bytes wait in the socket.
func (c *lateConn) InQueue() (n int, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	err = rc.Control(func(fd uintptr) { n, err = rawio.InQueue(int(fd)) })
	return n, err
}

func (c *lateConn) Read(p []byte) (int, error) {
	if c.late > 0 {
		c.late--
		return 0, os.ErrDeadlineExceeded
	}
	return c.Conn.Read(p)
}

// TestLateDeadlineIsNotSilence: a read deadline that passed while the
// gateway's bytes wait in the socket does not end the shard's link (the
// shard was late, not the gateway silent): the bytes are read and the
// late deadline counted; with nothing waiting it is still the gateway's
// silence.
func TestLateDeadlineIsNotSilence(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	gw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	conn := rawio.Wrap(nc).(*rawio.Conn)
	l := &link{srv: &Server{}, conn: &lateConn{Conn: conn, late: 1}, idle: poll.Patience}

	if _, err := gw.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, poll.Patience, func() error { // the bytes are in the shard's socket
		if !rawio.Waiting(conn) {
			return os.ErrNotExist
		}
		return nil
	})
	buf := make([]byte, 16)
	n, err := l.Read(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("read after a late deadline: %q %v, want the gateway's bytes", buf[:n], err)
	}
	if got := l.srv.Stats().LateDeadlines; got != 1 {
		t.Fatalf("late deadlines counted %d, want 1", got)
	}

	// A read that finds bytes allocates nothing: the late-deadline check
	// costs only the reads that failed.
	const runs = 100
	if _, err := gw.Write(make([]byte, 4*(runs+1))); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, poll.Patience, func() error {
		if n, _ := l.conn.(*lateConn).InQueue(); n < 4*(runs+1) {
			return os.ErrNotExist
		}
		return nil
	})
	if a := testing.AllocsPerRun(runs, func() {
		if _, err := l.Read(buf[:4]); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("a link read allocates %v times", a)
	}

	// Nothing waiting: the deadline is the gateway's silence.
	l.conn = &lateConn{Conn: conn, late: 1}
	if _, err := l.Read(buf); err == nil {
		t.Fatal("a deadline with nothing waiting did not end the read")
	}
	if got := l.srv.Stats().LateDeadlines; got != 1 {
		t.Fatalf("late deadlines counted %d after a real silence, want 1", got)
	}
}
