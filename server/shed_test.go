package server

import (
	"errors"
	"fmt"
	"math"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
)

// The handshake backlog counts the connections waiting on the gateway:
// one whose first read holds no whole HELLO waits on its device and stops
// counting, so devices that stall cannot make the gateway shed the others;
// a finished handshake counts as a departure.
func TestShedBacklogCountsOnlyTheGatewaysWaits(t *testing.T) {
	g := startGateway(t, Config{})
	var stalled []*dev
	const n = 64
	for range n {
		d := dial(t, g)
		d.write(rawHeader(100, protocol.TypeHello, 0, 0)) // the start of a HELLO, no more
		stalled = append(stalled, d)
	}
	waitFor(t, "connections in their handshake", func() bool {
		return g.metrics.connStates[stHandshake].Load() == n
	})
	poll.Until(t, poll.Patience, func() error {
		if n := g.shed.waiting.Load(); n != 0 {
			return fmt.Errorf("%d stalled connections still counted as waiting on the gateway", n)
		}
		return nil
	})
	before := g.shed.departed.Load()
	for i := range 3 {
		dial(t, g).hello(protocol.Hello{ID: fmt.Sprint("served", i)})
	}
	if n := g.metrics.rejectOverload.Get(); n != 0 {
		t.Fatalf("%d devices shed beside stalled ones", n)
	}
	if d := g.shed.departed.Load() - before; d != 3 {
		t.Fatalf("%d departures for 3 handshakes", d)
	}
	if n := g.shed.waiting.Load(); n != 0 {
		t.Fatalf("%d connections waiting after their WELCOME", n)
	}
	for _, d := range stalled {
		d.nc.Close()
	}
}

// A gateway that cannot finish a new connection's handshake within
// shed_lag refuses it at once with 503 and a retry hint, and takes
// connections again once the estimate says it can. The backlog is set by
// hand: a real one needs a box slow on cue; tools/scale --storm-after
// measures the real thing (docs/scale.md).
func TestShedsWhenBehind(t *testing.T) {
	g := startGateway(t, Config{})
	// 10,000 waiting, leaving at 2,000/s: a new one would wait 5 s.
	g.shed.waiting.Store(10000)
	g.shed.rateBm.Store(math.Float64bits(2000))
	g.shed.at.Store(time.Now().Add(time.Hour).UnixNano()) // no sample replaces the rate
	over := dial(t, g)
	over.send(protocol.TypeHello, 0, 0, nil)
	f := over.read()
	var e protocol.ErrorMsg
	if f.Type != protocol.TypeError || protocol.Unmarshal(f.Payload, &e) != nil || e.Code != protocol.CodeUnavailable {
		t.Fatalf("a device while behind got %v %s, want ERROR 503", f.Type, errText(f))
	}
	// The first return slot: after the expected 5 s, plus one handshake's
	// time (0.5 ms); the hint is 4/3 of it (the client comes back between
	// half the hint and all of it).
	if e.RetryMS < 6667 || e.RetryMS > 6740 { // plus the accept queue's few ms
		t.Fatalf("retry_ms %d, want 6,667 (4/3 of the expected 5 s)", e.RetryMS)
	}
	over.expectClosed()
	if n := metric(g, `switchyard_connections_rejected_total{reason="overload"}`); n != 1 {
		t.Fatalf("overload rejections %v, want 1", n)
	}
	if w := metric(g, "switchyard_handshake_wait_seconds"); w < 5 || w > 5.05 {
		t.Fatalf("switchyard_handshake_wait_seconds %v, want 5", w)
	}

	// Leaving at 100,000/s, the 10,000 are done in 0.1 s: let in.
	g.shed.rateBm.Store(math.Float64bits(100000))
	dial(t, g).hello(protocol.Hello{ID: "caught-up"})

	// shed_lag < 0 never sheds, however far behind.
	cfg := g.running
	cfg.ShedLag = -1
	if _, err := g.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	g.shed.rateBm.Store(math.Float64bits(0.001))
	dial(t, g).hello(protocol.Hello{ID: "never-shed"})
	if n := metric(g, `switchyard_connections_rejected_total{reason="overload"}`); n != 1 {
		t.Fatalf("overload rejections %v with shed_lag < 0, want still 1", n)
	}
}

// The departure rate is measured: after a burst of handshakes the
// estimate knows the gateway's pace, and an idle gateway's first storm
// lets shedMinWaiting in before it sheds.
func TestShedRateMeasured(t *testing.T) {
	var s shedState
	now := time.Now().UnixNano()
	s.sample(now) // the first sample starts the window
	s.departed.Add(500)
	s.sample(now + int64(500*time.Millisecond))
	if r := s.rate(); r < 999 || r > 1001 {
		t.Fatalf("rate %v after 500 departures in 0.5 s, want 1000", r)
	}
	s.waiting.Store(4000) // the rate is under the floor: 1,024/s
	if w := s.wait(time.Second); w.Round(time.Millisecond) != 3906*time.Millisecond {
		t.Fatalf("expected wait %v for 4,000 waiting under the floor of %d/s, want 3.906s", w, shedMinWaiting)
	}
	var idle shedState
	idle.waiting.Store(shedMinWaiting)
	if w := idle.wait(time.Second); w > time.Second {
		t.Fatalf("an idle gateway's first %d would wait %v: more than shed_lag", shedMinWaiting, w)
	}
	idle.waiting.Store(shedMinWaiting + 1)
	if w := idle.wait(time.Second); w <= time.Second {
		err := errors.New("an idle gateway lets more than shedMinWaiting in before it knows its pace")
		t.Fatal(err, w)
	}
}

// queued reads, at accept, whether the first bytes came with the
// connection and how long they waited in the accept queue
// (switchyard_accept_queue_seconds).
func TestShedAcceptQueueAge(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accept := func() (*net.TCPConn, int) {
		t.Helper()
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		tc := c.(*net.TCPConn)
		return tc, fdOf(t, tc)
	}
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	sc, fd := accept()
	defer sc.Close()
	if _, data, gone := queued(fd); data || gone {
		t.Fatalf("a connection that sent nothing reads as data %v, gone %v", data, gone)
	}

	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	const held = 200 * time.Millisecond
	time.Sleep(held) // the bytes wait in the accept queue (a lower bound: a slow box only adds)
	dc, fd := accept()
	defer dc.Close()
	age, data, gone := queued(fd)
	if !data || gone || age < held-20*time.Millisecond { // the kernel counts in jiffies
		t.Fatalf("queued = %v, %v, %v after its bytes waited %v", age, data, gone, held)
	}

	// A device that gave up while its HELLO waited in the queue: gone.
	q, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	q.Close()
	poll.Until(t, poll.Patience, func() error { // its FIN reaches the queued socket
		if n := listenQueue(fdOf(t, ln.(*net.TCPListener))); n != 1 {
			return fmt.Errorf("%d queued", n)
		}
		return nil
	})
	qc, fd := accept()
	defer qc.Close()
	poll.Until(t, poll.Patience, func() error {
		if _, data, gone := queued(fd); !gone || data {
			return fmt.Errorf("a connection closed in the queue reads as data %v, gone %v", data, gone)
		}
		return nil
	})
}

// fdOf is a socket's descriptor.
func fdOf(t *testing.T, c syscall.Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	_ = rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// listenQueue reads the accept queue's length off the listener.
func TestListenQueue(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fd := fdOf(t, ln.(*net.TCPListener))
	if n := listenQueue(fd); n != 0 {
		t.Fatalf("%d queued on a new listener", n)
	}
	const n = 5
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	poll.Until(t, poll.Patience, func() error {
		if q := listenQueue(fd); q != n {
			return fmt.Errorf("%d queued, want %d", q, n)
		}
		return nil
	})
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if q := listenQueue(fd); q != n-1 {
		t.Fatalf("%d queued after one accept, want %d", q, n-1)
	}
	if q := listenQueue(-1); q != 0 {
		t.Fatalf("%d queued on no listener", q)
	}
}

// Refused connections are told to come back spread at the gateway's pace:
// each takes the next return slot, one handshake's time after the last,
// starting where the gateway's own backlog ends; once the slots are past,
// the schedule starts again from now.
func TestShedReturnSlots(t *testing.T) {
	var s shedState
	lag := time.Second
	s.rateBm.Store(math.Float64bits(2000)) // a handshake every 0.5 ms
	s.waiting.Store(1000)                  // 0.5 s of backlog
	now := time.Now().UnixNano()
	for i := 1; i <= 4000; i++ {
		d := s.returnSlot(now, lag)
		if want := 500*time.Millisecond + time.Duration(i)*500*time.Microsecond; d != want {
			t.Fatalf("refusal %d at one instant: slot in %v, want %v", i, d, want)
		}
	}
	later := now + int64(time.Minute)
	if d := s.returnSlot(later, lag); d != 500*time.Millisecond+500*time.Microsecond {
		t.Fatalf("after the slots passed: slot in %v, want the backlog and one step", d)
	}
}

// A connection whose device closed it while it waited in the accept queue
// is closed at accept and counted as abandoned: nobody would read an
// answer. With TCP_DEFER_ACCEPT a connection that sent nothing becomes
// acceptable only with its FIN, so the device is gone by then, every time.
func TestGoneBeforeAccept(t *testing.T) {
	g := startGateway(t, Config{})
	const n = 3
	for range n {
		c, err := net.Dial("tcp", g.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	poll.Until(t, poll.Patience, func() error {
		if a := metric(g, "switchyard_handshakes_abandoned_total"); a != n {
			return fmt.Errorf("%v abandoned, want %d", a, n)
		}
		if c := g.metrics.conns.Load(); c != 0 {
			return fmt.Errorf("%d connections still open", c)
		}
		return nil
	})
	if w := g.shed.waiting.Load(); w != 0 {
		t.Fatalf("%d gone connections counted as waiting", w)
	}
	dial(t, g).hello(protocol.Hello{ID: "after-the-gone"})
	if q := metric(g, "switchyard_accept_queue_length"); q != 0 {
		t.Fatalf("accept queue length %v on an idle gateway", q)
	}
}

// The listener accepts in one go what the gateway finishes within an
// eighth of shed_lag at its measured pace, less what already waits on it:
// at least one connection per event (upstream netpoll's), at most
// netpoll's batch bound. Accepting the whole queue, or going by the
// pace's floor instead of the measured rate, timed handshakes out on an
// overloaded box (docs/scale.md).
func TestAcceptBudget(t *testing.T) {
	lag := time.Second
	for _, tc := range []struct {
		name    string
		rate    float64 // measured handshakes per second
		waiting int64
		lag     time.Duration
		want    int
	}{
		{"shedding off", 50000, 0, -1, 1},
		{"idle: nothing measured yet", 0, 0, lag, 1},
		{"slow: 170/s, none waiting", 170, 0, lag, 21},
		{"slow: 170/s, 15 waiting", 170, 15, lag, 6},
		{"slow: 170/s, far behind", 170, 5000, lag, 1},
		{"fast: 20,000/s, 2,400 waiting", 20000, 2400, lag, 100},
		{"fast: 20,000/s, 1,000 waiting", 20000, 1000, lag, netpoll.MaxAcceptBatch},
		{"fast, shed_lag 400 ms: 20,000/s, 900 waiting", 20000, 900, 400 * time.Millisecond, 100},
	} {
		var s shedState
		s.rateBm.Store(math.Float64bits(tc.rate))
		s.waiting.Store(tc.waiting)
		if got := s.acceptBudget(tc.lag); got != tc.want {
			t.Errorf("%s: budget %d, want %d", tc.name, got, tc.want)
		}
	}
}

// PROTOCOL.md counts the handshake timeout from the device's connect. The
// listener defers accepts (TCP_DEFER_ACCEPT), so a connection that sent
// nothing reaches the gateway deferAcceptSeconds after its connect, and
// its timer runs that much shorter; one that came with its first bytes
// was accepted when they arrived and gets the whole timeout. A
// conformance probe got the 408 of a silent connection 6.0 s after its
// connect with the default of 5 s before this.
func TestHandshakeTimeoutCountsFromConnect(t *testing.T) {
	g := startGateway(t, Config{HandshakeTimeout: 5 * time.Second})
	if !g.deferred {
		t.Fatal("the device listener does not defer accepts (TCP_DEFER_ACCEPT)")
	}
	if d := g.handshakeTimeout(false); d != 4*time.Second {
		t.Errorf("a silent connection's timeout: %v, want 4s (5s from its connect)", d)
	}
	if d := g.handshakeTimeout(true); d != 5*time.Second {
		t.Errorf("the timeout of a connection that came with data: %v, want 5s", d)
	}
	short := startGateway(t, Config{HandshakeTimeout: 300 * time.Millisecond})
	if d := short.handshakeTimeout(false); d != time.Millisecond {
		t.Errorf("a silent connection held longer than the timeout: %v, want 1ms (408 at once)", d)
	}
	// And such a connection does get its 408.
	d := dial(t, short)
	d.expectError(protocol.CodeTimeout, true)
}
