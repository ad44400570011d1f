package server

import (
	"errors"
	"fmt"
	"math"
	"net"
	"testing"
	"time"

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
	if e.RetryMS < 5000 || e.RetryMS > 5050 { // plus the accept queue's few ms
		t.Fatalf("retry_ms %d, want 5000 (the expected 5 s)", e.RetryMS)
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
		rc, err := tc.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var fd int
		_ = rc.Control(func(f uintptr) { fd = int(f) })
		return tc, fd
	}
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	sc, fd := accept()
	defer sc.Close()
	if _, data := queued(fd); data {
		t.Fatal("a connection that sent nothing reads as having data")
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
	age, data := queued(fd)
	if !data || age < held-20*time.Millisecond { // the kernel counts in jiffies
		t.Fatalf("queued = %v, %v after its bytes waited %v", age, data, held)
	}
}
