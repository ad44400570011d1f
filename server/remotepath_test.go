//go:build !race

// Allocation counts are only meaningful without the race detector (it
// makes sync.Pool drop items at random); make test-alloc runs these.

package server

import (
	"syscall"
	"testing"

	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
)

// remoteHotConn is hotConn with a remote backend: the conn's session is
// opened, through a real link over loopback, on an in-process echo shard
// (fakeShard with echo), so the gateway's whole remote path runs: device
// frame → link envelope → shard → envelope → device frame, without
// netpoll on the device side.
func remoteHotConn(tb testing.TB) (*conn, int) {
	tb.Helper()
	s := startEchoShard(tb, "s1")
	g, err := New(Config{Rate: -1, Backends: s.dir(), LinkKeys: [][]byte{fakeShardKey}})
	if err != nil {
		tb.Fatal(err)
	}
	g.remote.Start("hot")
	tb.Cleanup(g.remote.Close)
	// The test's end blocks (readN), so the link goroutines get the cores
	// and the network poller runs while it waits, bounded by a receive
	// timeout.
	c, peer := socketConn(tb, g)
	tv := syscall.NsecToTimeval(int64(poll.Patience))
	if err := syscall.SetsockoptTimeval(peer, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		tb.Fatal(err)
	}
	// Before the Backend's Close (cleanups run last first): a link that
	// closes fails its bound devices, and this one has no netpoll conn.
	tb.Cleanup(func() { g.remote.Closed(c) })
	hello, _ := protocol.EncodeHello(&protocol.Hello{V: 1, ID: "hot"})
	c.pmu.Lock()
	c.handshake(&protocol.Frame{Type: protocol.TypeHello, Payload: hello})
	c.pmu.Unlock()
	open := s.next(tb, protocol.LinkOpen)
	open.l.opened(open.e.Session)
	readN(tb, peer, make([]byte, 64<<10), 0)
	return c, peer
}

// readN reads n bytes of frames from fd into buf (n = 0: one read, the
// WELCOME); it fails tb when nothing comes for poll.Patience.
func readN(tb testing.TB, fd int, buf []byte, n int) {
	got, end := 0, n
	if n == 0 {
		end = len(buf)
	}
	for {
		m, err := syscall.Read(fd, buf[got:end])
		if err == syscall.EINTR {
			continue
		}
		if err != nil || m == 0 {
			tb.Fatalf("%d of %d bytes echoed through the shard: %v", got, n, err)
		}
		if got += m; got >= n {
			return
		}
	}
}

// TestRemotePathZeroAlloc: the gateway's remote DATA path allocates
// nothing per frame, upstream (DATA → Up envelope, ACK → DownAck, the
// link's writer) or downstream (the link's reader: Down and UpAck
// envelopes → DATA and ACK to the device). The shard is in-process, so
// its allocations would count too; it allocates nothing either.
func TestRemotePathZeroAlloc(t *testing.T) {
	c, peer := remoteHotConn(t)
	buf := make([]byte, 64<<10)
	be, rel := dataFrames(64)
	// Per iteration the device gets two DATA echoes and one ACK.
	want := 2*protocol.FrameSize(64) + protocol.FrameSize(0)
	seq := uint32(0)
	allocs := testing.AllocsPerRun(2000, func() {
		seq++
		handleTwo(t, c, be, rel, seq)
		c.flush()
		readN(t, peer, buf, want)
		c.ackDownstream(seq)
		c.flush()
	})
	if allocs != 0 {
		t.Fatalf("remote path allocates %.2f per iteration, want 0", allocs)
	}
	// The last iteration's frames: both echoes and the ACK of seq.
	var data int
	var acked uint32
	for b := buf[:want]; len(b) > 0; {
		f, n, err := protocol.Decode(b, DefaultMaxFrameForTest)
		if err != nil {
			t.Fatal(err)
		}
		switch f.Type {
		case protocol.TypeData:
			data++
		case protocol.TypeAck:
			acked = f.Seq
		}
		b = b[n:]
	}
	if data != 2 || acked != seq {
		t.Fatalf("last iteration: %d DATA and ACK %d, want 2 and %d", data, acked, seq)
	}
}

// BenchmarkRemotePath measures the gateway's remote path per echoed frame
// (decode, Up envelope, the link's write, the in-process shard's echo,
// the link's read, DATA to the device), in batches of 16 frames as the
// handler sees them: it is a round trip per 16 frames, so ns/op includes
// the fake shard's work and the wake-ups: a latency, not the CPU per
// frame under load (docs/benchmarks.md "Remote echo path: the lean
// path").
func BenchmarkRemotePath(b *testing.B) { echoBench(b, remoteHotConn, readN) }
