//go:build !race

// The race detector makes sync.Pool drop items at random, so allocation
// counts are only meaningful without it; make test runs these separately.

package server

import (
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// hotConn wires a conn to one end of a socketpair, with an attached session,
// so the frame path can be driven without netpoll.
func hotConn(tb testing.TB) (*conn, int) {
	tb.Helper()
	g, err := New(Config{Rate: -1})
	if err != nil {
		tb.Fatal(err)
	}
	c, peer := socketConn(tb, g)
	if err := syscall.SetNonblock(peer, true); err != nil {
		tb.Fatal(err)
	}
	s, _, _ := g.sessions.attach(c, "hot", nil, false)
	c.sess = s
	c.ready.Store(true)
	c.rl.reset(g)
	return c, peer
}

// socketConn returns a conn of g on one end of a socketpair, non-blocking
// as netpoll's are, and the other end (blocking) for the test.
func socketConn(tb testing.TB, g *Gateway) (*conn, int) {
	tb.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { syscall.Close(fds[0]); syscall.Close(fds[1]) })
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		tb.Fatal(err)
	}
	c := &conn{g: g, fd: fds[0]}
	c.dl.Owner = c
	return c, fds[1]
}

// dataFrames returns a best-effort and a reliable DATA frame (seq 0) with
// size bytes of payload.
func dataFrames(size int) (be, rel []byte) {
	return protocol.AppendFrame(nil, protocol.TypeData, 0, 0, make([]byte, size)),
		protocol.AppendFrame(nil, protocol.TypeData, protocol.FlagAckRequested, 0, make([]byte, size))
}

// handleTwo hands c a best-effort DATA (be) and a reliable one (rel)
// numbered seq, as decoded from its input.
func handleTwo(tb testing.TB, c *conn, be, rel []byte, seq uint32) {
	f, _, err := protocol.Decode(be, DefaultMaxFrameForTest)
	if err != nil {
		tb.Fatal(err)
	}
	c.handle(&f)
	f, _, _ = protocol.Decode(rel, DefaultMaxFrameForTest)
	f.Seq = seq
	c.handle(&f)
}

func drain(fd int, buf []byte) {
	for {
		if n, err := syscall.Read(fd, buf); n <= 0 || err != nil {
			return
		}
	}
}

// TestEchoPathZeroAlloc: decode, route (session, fencing, rate limit) and
// encode allocate nothing per frame, best effort or reliable.
func TestEchoPathZeroAlloc(t *testing.T) {
	c, peer := hotConn(t)
	buf := make([]byte, 64<<10)
	be, rel := dataFrames(64)
	seq := uint32(0)
	allocs := testing.AllocsPerRun(2000, func() {
		seq++
		handleTwo(t, c, be, rel, seq)
		c.flush()
		c.ackDownstream(seq)
		drain(peer, buf)
	})
	if allocs != 0 {
		t.Fatalf("echo path allocates %.2f per iteration, want 0", allocs)
	}
	if c.sess.upLast != seq || c.ackSent != seq {
		t.Fatalf("upLast %d ackSent %d, want %d", c.sess.upLast, c.ackSent, seq)
	}
}

const DefaultMaxFrameForTest = protocol.DefaultMaxFrame

// TestBatchPathZeroAlloc: the handler's per-batch accounting (frames and
// bytes by type, the batch histograms) and the per-flush sent counts
// allocate nothing.
func TestBatchPathZeroAlloc(t *testing.T) {
	c, peer := hotConn(t)
	buf := make([]byte, 64<<10)
	in := protocol.AppendFrame(nil, protocol.TypeData, 0, 0, make([]byte, 64))
	ping := protocol.AppendFrame(nil, protocol.TypePing, 0, 0, nil)
	allocs := testing.AllocsPerRun(2000, func() {
		bt := batch{start: time.Now()}
		for _, p := range [][]byte{in, in, ping} {
			f, _, _ := protocol.Decode(p, DefaultMaxFrameForTest)
			c.frame(&f, &bt)
		}
		c.flush()
		bt.count(c.g)
		drain(peer, buf)
	})
	if allocs != 0 {
		t.Fatalf("batch path allocates %.2f per iteration, want 0", allocs)
	}
	if got := c.g.metrics.framesIn[kindPing].Get(); got < 2000 {
		t.Fatalf("%d PINGs counted, want at least 2000", got)
	}
}

// TestWriteFramesCounts: a link reader's staged frames (WriteFrames) reach
// the socket as they are, each counted by its type and size, as Queue
// counts one, without allocating.
func TestWriteFramesCounts(t *testing.T) {
	c, peer := hotConn(t)
	var frames []byte
	frames = protocol.AppendFrame(frames, protocol.TypeData, 0, 1, make([]byte, 64))
	frames = protocol.AppendFrame(frames, protocol.TypeAck, 0, 7, nil)
	frames = protocol.AppendFrame(frames, protocol.TypeData, protocol.FlagAckRequested, 2, make([]byte, 3))
	m := c.g.metrics
	data, dataBytes, acks := m.framesOut[kindData].Get(), m.bytesOut[kindData].Get(), m.framesOut[kindAck].Get()
	buf := make([]byte, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		c.WriteFrames(frames)
		got := 0
		for got < len(frames) {
			n, err := syscall.Read(peer, buf[got:])
			if err == syscall.EAGAIN || err == syscall.EINTR {
				continue
			}
			if err != nil || n == 0 {
				t.Fatalf("read %d of %d bytes: %v", got, len(frames), err)
			}
			got += n
		}
		if string(buf[:got]) != string(frames) {
			t.Fatal("the device got other bytes than the frames written")
		}
	})
	if allocs != 0 {
		t.Fatalf("WriteFrames allocates %.2f per call, want 0", allocs)
	}
	runs := uint64(101) // AllocsPerRun runs the function once more first
	if got := m.framesOut[kindData].Get() - data; got != 2*runs {
		t.Errorf("DATA frames counted %d, want %d", got, 2*runs)
	}
	if got := m.bytesOut[kindData].Get() - dataBytes; got != runs*uint64(2*protocol.HeaderSize+64+3) {
		t.Errorf("DATA bytes counted %d, want %d", got, runs*uint64(2*protocol.HeaderSize+64+3))
	}
	if got := m.framesOut[kindAck].Get() - acks; got != runs {
		t.Errorf("ACK frames counted %d, want %d", got, runs)
	}
}

// TestWriteFramesKeepsTheRest: staged frames the socket does not take at
// once (written from the caller's buffer, nothing queued before them) are
// kept, in order, and the connection waits on the backlog to write them.
func TestWriteFramesKeepsTheRest(t *testing.T) {
	c, peer := hotConn(t)
	// A small socket buffer (the kernel doubles it), and frames that
	// overflow it by less than max_outbound (a slow consumer's bound).
	if err := syscall.SetsockoptInt(c.fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 32<<10); err != nil {
		t.Fatal(err)
	}
	var frames []byte
	for seq := uint32(1); len(frames) < 160<<10; seq++ {
		frames = protocol.AppendFrame(frames, protocol.TypeData, 0, seq, make([]byte, 1000))
	}
	c.WriteFrames(frames)
	c.wmu.Lock()
	kept, backlog := 0, c.inBacklog
	if c.out != nil {
		kept = len(*c.out)
	}
	c.wmu.Unlock()
	if kept == 0 || kept >= len(frames) || !backlog {
		t.Fatalf("kept %d of %d bytes, in the backlog %v: want the part the socket did not take, waiting", kept, len(frames), backlog)
	}
	got := make([]byte, 0, len(frames))
	buf := make([]byte, 64<<10)
	for len(got) < len(frames) {
		n, err := syscall.Read(peer, buf)
		if n > 0 {
			got = append(got, buf[:n]...)
			continue
		}
		if err != syscall.EAGAIN && err != syscall.EINTR {
			t.Fatalf("read after %d of %d bytes: %v", len(got), len(frames), err)
		}
		c.writeOut() // what the backlog's retry does
	}
	if string(got) != string(frames) {
		t.Fatal("the device got other bytes than the frames written")
	}
}

// BenchmarkBatchPath measures the frame path as the handler runs it:
// per frame c.frame (the batch's counts by type, then handle), and per 16
// frames the flush and the batch's accounting (counters by type, the
// batch histograms). docs/benchmarks.md "Metrics on the frame path".
func BenchmarkBatchPath(b *testing.B) {
	for _, size := range []int{64, 1024} {
		b.Run(itoa(size), func(b *testing.B) {
			c, peer := hotConn(b)
			batchLoop(b, c, peer, size)
		})
	}
}

// batchLoop drives c's frame path with DATA frames of size bytes, in
// batches of 16, until b is done.
func batchLoop(b *testing.B, c *conn, peer, size int) {
	buf := make([]byte, 64<<10)
	in := protocol.AppendFrame(nil, protocol.TypeData, 0, 0, make([]byte, size))
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	bt := batch{start: time.Now()}
	i := 0
	for b.Loop() {
		f, _, _ := protocol.Decode(in, DefaultMaxFrameForTest)
		c.frame(&f, &bt)
		if i++; i%16 == 0 {
			c.flush()
			bt.count(c.g)
			bt = batch{start: time.Now()}
			drain(peer, buf)
		}
	}
}

// BenchmarkEchoPath measures the gateway's own work per echoed frame
// (decode, route, encode, one write per 16 frames), without netpoll.
func BenchmarkEchoPath(b *testing.B) {
	echoBench(b, hotConn, func(_ testing.TB, fd int, buf []byte, _ int) { drain(fd, buf) })
}

// echoBench hands the conns that open makes DATA frames of 64 and 1024
// bytes, flushes every 16 and then waits (n: the bytes of the 16
// echoes), until b is done.
func echoBench(b *testing.B, open func(testing.TB) (*conn, int), wait func(tb testing.TB, fd int, buf []byte, n int)) {
	for _, size := range []int{64, 1024} {
		b.Run(itoa(size), func(b *testing.B) {
			c, peer := open(b)
			buf := make([]byte, 64<<10)
			in := protocol.AppendFrame(nil, protocol.TypeData, 0, 0, make([]byte, size))
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			i := 0
			for b.Loop() {
				f, _, _ := protocol.Decode(in, DefaultMaxFrameForTest)
				c.handle(&f)
				if i++; i%16 == 0 {
					c.flush()
					wait(b, peer, buf, 16*len(in))
				}
			}
		})
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// handshakeBench is a hot connection that handshakes again and again:
// the HELLOs of n devices (with auth tokens when auth is set, the gateway
// then checking them), and one HELLO → WELCOME per call of once.
type handshakeBench struct {
	c      *conn
	peer   int
	hellos [][]byte
	buf    []byte
	i      int
}

func newHandshakeBench(tb testing.TB, auth bool, n int) *handshakeBench {
	hb := &handshakeBench{buf: make([]byte, 64<<10)}
	hb.c, hb.peer = hotConn(tb)
	secret := []byte("bench-secret")
	if auth {
		lv := *hb.c.g.live.Load()
		lv.auth = protocol.NewTokenVerifier([][]byte{secret})
		hb.c.g.live.Store(&lv)
	}
	for i := range n {
		h := protocol.Hello{V: 1, ID: "device-" + itoa(i)}
		if auth {
			h.Token = protocol.MakeToken(secret, h.ID, time.Now().Add(time.Hour))
		}
		p, _ := protocol.EncodeHello(&h)
		hb.hellos = append(hb.hellos, p)
	}
	return hb
}

func (hb *handshakeBench) once() {
	c := hb.c
	c.ready.Store(false)
	c.sess = nil
	f := protocol.Frame{Type: protocol.TypeHello, Payload: hb.hellos[hb.i%len(hb.hellos)]}
	c.handshake(&f)
	c.flush()
	drain(hb.peer, hb.buf)
	hb.i++
}

// TestHandshakeAllocs bounds the allocations of the gateway's own part of
// a handshake (HELLO → WELCOME, as BenchmarkHandshake runs it): what the
// session keeps (its entry, its id string, its device id) and the HELLO's
// decoded keys and resume token. Keying an HMAC per token, a msgpack
// decoder per HELLO and reflection for the WELCOME made it 21 (33 with
// auth); each is garbage the collector pays for at every handshake.
func TestHandshakeAllocs(t *testing.T) {
	for _, auth := range []bool{false, true} {
		hb := newHandshakeBench(t, auth, 1)
		if n, max := testing.AllocsPerRun(500, hb.once), 8.0; n > max {
			t.Errorf("auth %v: %v allocations per handshake, want at most %v", auth, n, max)
		}
	}
}

// BenchmarkHandshake measures the gateway's own work for one HELLO →
// WELCOME (decode, auth, session, resume token, WELCOME), without the
// kernel's accept and close.
func BenchmarkHandshake(b *testing.B) {
	for _, auth := range []bool{false, true} {
		name := "noauth"
		if auth {
			name = "auth"
		}
		b.Run(name, func(b *testing.B) {
			hb := newHandshakeBench(b, auth, 1024)
			b.ReportAllocs()
			for b.Loop() {
				hb.once()
			}
		})
	}
}
