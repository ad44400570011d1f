package backend_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/backend/backendtest"
	"github.com/switchyard-gw/switchyard/protocol"
)

func TestMailboxBound(t *testing.T) {
	h := &recorder{block: make(chan struct{})}
	srv := start(t, "a", h, func(c *backend.Config) { c.MaxMailbox = 4 })
	g := backendtest.Dial(t, srv.Addr(), key, "gw")
	sid := backendtest.SID(1)
	openSession(t, g, sid, "dev", 0, backendtest.OpenOpts{})
	g.Up(sid, 1, 1, true, "1")
	waitFor(t, "handler busy", func() bool { return h.par.Load() == 1 })
	for seq := uint32(2); seq <= 10; seq++ {
		g.Up(sid, 1, seq, true, fmt.Sprint(seq))
	}
	waitFor(t, "drops", func() bool { return srv.Stats().DropMailbox == 5 })
	close(h.block)
	ackThrough(t, g, sid, 5)
	g.Quiet(30 * time.Millisecond)
	if st := srv.Stats(); st.UpDelivered != 5 || st.DropMailbox != 5 {
		t.Fatalf("stats %+v", st)
	}
	g.Up(sid, 1, 6, true, "6") // the device resends later
	ackThrough(t, g, sid, 6)
}

func TestOutboxBound(t *testing.T) {
	srv := start(t, "a", &recorder{}, func(c *backend.Config) { c.MaxOutbox = 10 })
	g := backendtest.Dial(t, srv.Addr(), key, "gw")
	sid := backendtest.SID(1)
	openSession(t, g, sid, "dev", 0, backendtest.OpenOpts{})
	if err := srv.Push("dev", []byte("123456"), true); err != nil {
		t.Fatal(err)
	}
	if err := srv.Push("dev", []byte("123456"), true); !errors.Is(err, backend.ErrOutboxFull) {
		t.Fatalf("second push: %v", err)
	}
	g.Expect(protocol.LinkDown)
	g.Control(protocol.LinkDownAck, sid, 1, 1, "")
	waitFor(t, "outbox trimmed", func() bool { return srv.Push("dev", []byte("123456"), true) == nil })
	if d := g.Expect(protocol.LinkDown); d.Seq != 2 {
		t.Fatalf("seq %d", d.Seq)
	}
	if srv.Stats().DropOutbox == 0 {
		t.Fatal("no drop counted")
	}
}

// TestLinkQueueBound: a gateway that stops reading fills the link's
// queue: best-effort frames are dropped first, then a frame that must
// not be lost closes the link as a slow consumer; its reliable frames
// wait in the outbox and are redelivered when the device resumes.
func TestLinkQueueBound(t *testing.T) {
	const queue = 64 << 10
	srv := start(t, "a", &recorder{}, func(c *backend.Config) {
		c.MaxLinkQueue = queue
		c.MaxOutbox = 256 << 20 // the kernel's socket buffers take several MB first
	})
	g := backendtest.Dial(t, srv.Addr(), key, "gw")
	sid := backendtest.SID(1)
	openSession(t, g, sid, "dev", 0, backendtest.OpenOpts{})
	big := make([]byte, 32<<10)
	deadline := time.Now().Add(5 * time.Second)
	for srv.Push("dev", big, false) == nil {
		if time.Now().After(deadline) {
			t.Fatal("link queue never filled")
		}
	}
	if srv.Stats().DropLinkQueue == 0 {
		t.Fatal("drop not counted")
	}
	sent := 0
	for srv.Stats().SlowLinks == 0 {
		binary.BigEndian.PutUint32(big, uint32(sent+1))
		if err := srv.Push("dev", big, true); err != nil {
			t.Fatalf("reliable push %d: %v", sent, err)
		}
		sent++
		if time.Now().After(deadline) {
			t.Fatal("slow link not closed")
		}
	}
	waitFor(t, "detached", func() bool { return !srv.Session("dev").Attached() && srv.Stats().Links == 0 })
	g2 := backendtest.Dial(t, srv.Addr(), key, "gw")
	openSession(t, g2, sid, "dev", 0, backendtest.OpenOpts{Reason: "resumed"})
	for i := 1; i <= sent; i++ {
		d := g2.Expect(protocol.LinkDown)
		if d.Seq != uint32(i) || binary.BigEndian.Uint32(d.Payload) != uint32(i) {
			t.Fatalf("redelivered seq %d, want %d", d.Seq, i)
		}
	}
}

func TestOpenSendsWaitForOpened(t *testing.T) {
	h := &recorder{}
	h.onOpen = func(s *backend.Session, r backend.OpenReason, state []byte) error {
		s.Send([]byte("welcome"), true)
		s.Send([]byte("hint"), false)
		return s.Subscribe("news")
	}
	srv := start(t, "a", h, nil)
	g := backendtest.Dial(t, srv.Addr(), key, "gw")
	sid := backendtest.SID(1)
	openSession(t, g, sid, "dev", 0, backendtest.OpenOpts{})
	g.Expect(protocol.LinkSubscribe)
	if d := g.Expect(protocol.LinkDown); d.Seq != 1 || string(d.Payload) != "welcome" {
		t.Fatalf("down %d %q", d.Seq, d.Payload)
	}
	if d := g.Expect(protocol.LinkDown); d.Seq != 0 || string(d.Payload) != "hint" {
		t.Fatalf("down %d %q", d.Seq, d.Payload)
	}
}

func TestBadInput(t *testing.T) {
	srv := start(t, "a", &recorder{}, nil)
	g := backendtest.Dial(t, srv.Addr(), key, "gw")
	g.Send(protocol.Envelope{Kind: protocol.LinkOpened}) // not a gateway's kind
	g.Send(protocol.Envelope{Kind: protocol.LinkOpen, Ext: []byte{0x81, 0xa6, 'd', 'e', 'v', 'i', 'c', 'e', 0x01}})
	if x := backendtest.DecodeExt(t, g.Expect(protocol.LinkRefused).Ext); x.Code != 400 {
		t.Fatalf("refused %+v", x)
	}
	// A frame whose envelope does not decode is skipped.
	g.SendRaw([]byte{0, 0, 0, 3, 0x93, 1, 2})
	g.Send(protocol.Envelope{Kind: protocol.LinkPing})
	g.Expect(protocol.LinkPong)
	if st := srv.Stats(); st.DropMalformed != 3 {
		t.Fatalf("stats %+v", st)
	}
	// A length beyond the limit ends the link.
	g.SendRaw([]byte{0x7f, 0xff, 0xff, 0xff})
	if !g.Closed() {
		t.Fatal("link not closed")
	}
}

// TestLinkHeartbeatSilentGateway: with the default heartbeat settings, a
// gateway that authenticates and then sends nothing, not even a Pong
// (stopped, or its host gone quiet), loses its link within about
// DefaultLinkTimeout, counted as idle.
func TestLinkHeartbeatSilentGateway(t *testing.T) {
	srv := start(t, "a", &recorder{}, func(c *backend.Config) { c.LinkTimeout = 0 })
	g := backendtest.Dial(t, srv.Addr(), key, "gw")
	openSession(t, g, backendtest.SID(1), "dev-1", 0, backendtest.OpenOpts{})
	silent := time.Now()
	// From here g never reads, so never answers the shard's Pings.
	waitForWithin(t, 20*time.Second, "idle close", func() bool { return srv.Stats().LinksIdle == 1 && srv.Stats().Links == 0 })
	if took := time.Since(silent); took > 10*time.Second { // loose: a loaded box
		t.Fatalf("silent gateway detected after %v", took)
	}
}

// TestLinkHeartbeatHealthyIdleLink: an idle link whose gateway answers the
// Pings stays up through many ping intervals and several timeouts. The
// interval is 250 ms, not the default 1 s, so that the wait spans many;
// the timeout is 3 s: the test's fake gateway answers a Ping only when
// the test goroutine runs, which a loaded box delays past 1 s (seen once
// in CI); without Pongs the link would still be dropped.
func TestLinkHeartbeatHealthyIdleLink(t *testing.T) {
	const timeout = 3 * time.Second
	srv := start(t, "a", &recorder{}, func(c *backend.Config) {
		c.PingInterval, c.LinkTimeout = 250*time.Millisecond, timeout
	})
	g := backendtest.Dial(t, srv.Addr(), key, "gw")
	g.Quiet(3 * timeout) // 36 ping intervals: only Pings arrive, each answered
	if st := srv.Stats(); st.LinksIdle != 0 || st.Links != 1 {
		t.Fatalf("healthy idle link dropped: %+v", st)
	}
}

func TestCloseEndsSessions(t *testing.T) {
	h := &recorder{}
	srv, err := backend.New(backend.Config{Shard: "a", Link: "127.0.0.1:0", ClusterKeys: [][]byte{key}, Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); !errors.Is(err, backend.ErrStarted) {
		t.Fatalf("second start: %v", err)
	}
	g := backendtest.Dial(t, srv.Addr(), key, "gw")
	for i := range 3 {
		openSession(t, g, backendtest.SID(i), fmt.Sprint("dev-", i), 0, backendtest.OpenOpts{})
	}
	g.Control(protocol.LinkClose, backendtest.SID(2), 1, 0, "gone") // a detached one ends too
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(ctx); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if h.count("close") != 3 || !h.has("close dev-0 server closed") {
		t.Fatalf("calls %q", h.lines())
	}
	if !g.Closed() {
		t.Fatal("link open after Close")
	}
	if _, err := backendtest.DialErr(t, srv.Addr(), key, "late"); err == nil {
		t.Fatal("link accepted after Close")
	}
}

// TestNoGoroutinePerSession: many sessions with traffic run on the fixed
// worker pool.
func TestNoGoroutinePerSession(t *testing.T) {
	h := &recorder{}
	srv := start(t, "a", h, func(c *backend.Config) { c.Workers = 4 })
	g := backendtest.Dial(t, srv.Addr(), key, "gw")
	base := runtime.NumGoroutine()
	const n = 300
	for i := range n {
		g.Open(backendtest.SID(i), fmt.Sprint("dev-", i), 0, backendtest.OpenOpts{})
	}
	for i := range n {
		g.Up(backendtest.SID(i), 1, 0, false, "x")
	}
	waitFor(t, "delivered", func() bool { return srv.Stats().UpDelivered == n })
	if got := runtime.NumGoroutine(); got > base+4 {
		t.Fatalf("%d goroutines for %d sessions (base %d)", got, n, base)
	}
}
