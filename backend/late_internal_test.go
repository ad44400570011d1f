package backend

import (
	"os"
	"testing"

	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/internal/rawio"
	"github.com/switchyard-gw/switchyard/internal/rawio/rawiotest"
)

// TestLateDeadlineIsNotSilence: a read deadline that passed while the
// gateway's bytes wait in the socket does not end the shard's link (the
// shard was late, not the gateway silent): the bytes are read and the
// late deadline counted; with nothing waiting it is still the gateway's
// silence.
func TestLateDeadlineIsNotSilence(t *testing.T) {
	gw, nc := rawiotest.Pair(t)
	conn := rawio.Wrap(nc).(*rawio.Conn)
	l := &link{srv: &Server{}, conn: &rawiotest.Late{Conn: conn, Reads: 1}, idle: poll.Patience}

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
	poll.Until(t, poll.Patience, func() error { // one write: one segment on loopback
		if !rawio.Waiting(conn) {
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
	l.conn = &rawiotest.Late{Conn: conn, Reads: 1}
	if _, err := l.Read(buf); err == nil {
		t.Fatal("a deadline with nothing waiting did not end the read")
	}
	if got := l.srv.Stats().LateDeadlines; got != 1 {
		t.Fatalf("late deadlines counted %d after a real silence, want 1", got)
	}
}
