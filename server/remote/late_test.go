package remote

import (
	"net"
	"os"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/internal/rawio/rawiotest"
)

// TestLateDeadlineIsNotSilence: a read deadline that passed while the
// shard's bytes wait in the socket does not end the link (the gateway was
// late, not the shard silent): the bytes are read and the late deadline
// counted; with nothing waiting it is still the shard's silence.
func TestLateDeadlineIsNotSilence(t *testing.T) {
	gw, shard := rawiotest.Pair(t)
	rc, err := gw.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(metrics.NewSet()).link("s1")
	l := &link{nc: &rawiotest.Late{Conn: gw, Reads: 1}, rc: rc, timeout: poll.Patience, m: m}

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
	l.nc = &rawiotest.Late{Conn: gw, Reads: 1}
	if _, err := l.Read(buf); err == nil {
		t.Fatal("a deadline with nothing waiting did not end the read")
	}
	if got := m.lateDeadlines.Get(); got != 1 {
		t.Fatalf("late deadlines counted %d after a real silence, want 1", got)
	}
}
