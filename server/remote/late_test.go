package remote

import (
	"net"
	"os"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/switchyard-gw/switchyard/internal/poll"
)

// lateConn is the link's connection of a gateway that was kept off the
// CPU past its read deadline: Go's poller reports the deadline's timer
// first, although the shard's bytes are there.
type lateConn struct {
	net.Conn
	late int
}

func (c *lateConn) Read(p []byte) (int, error) {
	if c.late > 0 {
		c.late--
		return 0, os.ErrDeadlineExceeded
	}
	return c.Conn.Read(p)
}

// TestLateDeadlineIsNotSilence: a read deadline that passed while the
// shard's bytes wait in the socket does not end the link (the gateway was
// late, not the shard silent): the bytes are read and the late deadline
// counted; with nothing waiting it is still the shard's silence.
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
	shard, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer shard.Close()
	rc, err := gw.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(metrics.NewSet()).link("s1")
	l := &link{nc: &lateConn{Conn: gw, late: 1}, rc: rc, timeout: poll.Patience, m: m}

	if _, err := shard.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, poll.Patience, func() error { // the bytes are in the gateway's socket
		if !l.moreWaiting() {
			return os.ErrNotExist
		}
		return nil
	})
	buf := make([]byte, 16)
	n, err := l.Read(buf)
	if err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("read after a late deadline: %q %v, want the shard's bytes", buf[:n], err)
	}
	if got := m.lateDeadlines.Get(); got != 1 {
		t.Fatalf("late deadlines counted %d, want 1", got)
	}

	// Nothing waiting: the deadline is the shard's silence.
	l.nc = &lateConn{Conn: gw, late: 1}
	if _, err := l.Read(buf); err == nil {
		t.Fatal("a deadline with nothing waiting did not end the read")
	}
	if got := m.lateDeadlines.Get(); got != 1 {
		t.Fatalf("late deadlines counted %d after a real silence, want 1", got)
	}
}
