package remote

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/switchyard-gw/switchyard/internal/rawio/rawiotest"
	"github.com/switchyard-gw/switchyard/protocol"
)

// stageDevice is a Device that records what reaches it, in order.
type stageDevice struct {
	id      protocol.SessionID
	b       Binding
	mu      sync.Mutex
	log     []string // "frames:DATA 1,DATA 2", "queue:DATA 3", "flush", "fail:409"
	pmu     sync.Mutex
	closing bool
}

func (d *stageDevice) Session() (protocol.SessionID, string) { return d.id, "dev" }
func (d *stageDevice) Binding() *Binding                     { return &d.b }
func (d *stageDevice) Lock()                                 { d.pmu.Lock() }
func (d *stageDevice) Unlock()                               { d.pmu.Unlock() }
func (d *stageDevice) Opening() bool                         { return false }
func (d *stageDevice) Opened(bool, uint32)                   {}
func (d *stageDevice) Closing() bool                         { return false }
func (d *stageDevice) record(s string)                       { d.mu.Lock(); d.log = append(d.log, s); d.mu.Unlock() }
func (d *stageDevice) Flush()                                { d.record("flush") }
func (d *stageDevice) Fail(code int, _ string)               { d.record(fmt.Sprint("fail:", code)) }

func (d *stageDevice) Queue(t protocol.Type, _ protocol.Flags, seq uint32, _ []byte) {
	d.record(fmt.Sprint("queue:", t, " ", seq))
}

func (d *stageDevice) WriteFrames(frames []byte) {
	var fs []string
	for len(frames) > 0 {
		f, n, err := protocol.Decode(frames, len(frames))
		if err != nil {
			d.record("bad frames: " + err.Error())
			return
		}
		fs = append(fs, fmt.Sprint(f.Type, " ", f.Seq))
		frames = frames[n:]
	}
	d.record("frames:" + strings.Join(fs, ","))
}

func (d *stageDevice) events() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.log, " | ")
}

// TestHandlerBatchIsOneLinkAppend: the envelopes of a device handler's
// batch (Data, Ack) wait on the device until Flush, which queues them on
// the link at once, in order, and wakes its writer once; a link that
// refuses the batch drops it whole and counts its DATA.
func TestHandlerBatchIsOneLinkAppend(t *testing.T) {
	r := newTestBackend(t, Config{})
	l := newLink(r, "s1", "127.0.0.1:1")
	d := &stageDevice{id: protocol.SessionID{1}}
	d.b.link = l
	d.b.epoch.Store(7)

	d.Lock()
	for seq := uint32(1); seq <= 16; seq++ {
		r.Data(d, protocol.Frame{Type: protocol.TypeData, Seq: seq, Payload: []byte("hello")})
	}
	r.Ack(d, 3)
	if len(l.out) != 0 || len(l.wake) != 0 {
		t.Fatalf("before Flush the link holds %d bytes (woken %d): the batch must wait on the device", len(l.out), len(l.wake))
	}
	r.Flush(d)
	d.Unlock()
	if l.queued != 17 || len(l.wake) != 1 {
		t.Fatalf("after Flush: %d envelopes queued, writer woken %d times; want 17 and 1", l.queued, len(l.wake))
	}
	var got []string
	for b := l.out; len(b) > 0; {
		e, n, err := protocol.DecodeLinkFrame(b)
		if err != nil {
			t.Fatal(err)
		}
		if e.Session != d.id || e.Epoch != 7 {
			t.Fatalf("envelope of session %x epoch %d, want %x epoch 7", e.Session, e.Epoch, d.id)
		}
		got = append(got, fmt.Sprint(e.Kind, " ", e.Seq))
		b = b[n:]
	}
	want := []string{}
	for seq := 1; seq <= 16; seq++ {
		want = append(want, fmt.Sprint(protocol.LinkUp, " ", seq))
	}
	want = append(want, fmt.Sprint(protocol.LinkDownAck, " ", 3))
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("link queue: %v\nwant %v", got, want)
	}
	if d.b.up.buf != nil {
		t.Fatal("the device keeps a staged buffer after Flush")
	}

	// A closed link refuses the whole batch: 2 DATA counted as dropped.
	drops := r.m.drops[dropBackend].Get()
	l.fail(ErrLinkClosed)
	d.Lock()
	r.Data(d, protocol.Frame{Type: protocol.TypeData, Seq: 17})
	r.Data(d, protocol.Frame{Type: protocol.TypeData, Seq: 18})
	r.Ack(d, 4)
	r.Flush(d)
	d.Unlock()
	if got := r.m.drops[dropBackend].Get() - drops; got != 2 {
		t.Fatalf("a refused batch of 2 DATA and an ACK counted %d dropped, want 2", got)
	}
}

// readEnvelopes has a link's reader (a link not started) read envelopes,
// written by the shard's end in one write, until the link ends; the
// devices are bound to the link at epoch 1.
func readEnvelopes(t *testing.T, devices []*stageDevice, envelopes []*protocol.Envelope) {
	t.Helper()
	r := newTestBackend(t, Config{})
	gw, shard := rawiotest.Pair(t)
	l := newLink(r, "s1", "127.0.0.1:1")
	l.nc = gw
	l.rd = protocol.NewLinkReader(l)
	for _, d := range devices {
		d.b.link = l
		d.b.epoch.Store(1)
		l.bind(d.id, d)
	}
	var buf []byte
	for _, e := range envelopes {
		buf = protocol.AppendLinkFrame(buf, e)
	}
	// One write, then the end of the link: the reader gets every envelope
	// (most likely in one read) and ends with what it staged written.
	if _, err := shard.Write(buf); err != nil {
		t.Fatal(err)
	}
	shard.Close()
	if err := l.readLoop(); err == nil {
		t.Fatal("readLoop ended without an error at the link's end")
	}
}

func downTo(d *stageDevice, seq uint32, payload []byte) *protocol.Envelope {
	return &protocol.Envelope{Kind: protocol.LinkDown, Session: d.id, Epoch: 1, Seq: seq, Payload: payload}
}

// TestLinkReadIsOneWritePerDevice: a link reader stages a read's frames
// per device and writes each device once, with what came before anything
// else that touches the device (a Kick) written first.
func TestLinkReadIsOneWritePerDevice(t *testing.T) {
	a := &stageDevice{id: protocol.SessionID{0xa}}
	b := &stageDevice{id: protocol.SessionID{0xb}}
	kick, _ := protocol.EncodeLinkExt(&protocol.LinkExt{Code: protocol.CodeConflict, Reason: "test"})
	x := []byte("x")
	readEnvelopes(t, []*stageDevice{a, b}, []*protocol.Envelope{
		downTo(a, 1, x), downTo(b, 1, x), downTo(a, 2, x),
		{Kind: protocol.LinkUpAck, Session: a.id, Epoch: 1, Seq: 5},
		downTo(b, 2, x), downTo(b, 3, x),
		{Kind: protocol.LinkKick, Session: b.id, Ext: kick},
		downTo(a, 3, x),
	})
	got := map[*stageDevice]string{a: a.events(), b: b.events()}
	want := map[*stageDevice]string{
		// In one read: DATA 1, 2, ACK 5, DATA 3 in one write.
		a: "frames:DATA 1,DATA 2,ACK 5,DATA 3",
		// The Kick writes what came before it first.
		b: "frames:DATA 1,DATA 2,DATA 3 | fail:409",
	}
	for d, w := range want {
		if got[d] != w && !sameFrames(got[d], w) {
			t.Errorf("device %x got %q, want %q", d.id[0], got[d], w)
		}
	}
}

// TestLinkStagesBounded: what a reader stages for one device is written
// once it reaches maxStagedDown, not held for the rest of the read.
func TestLinkStagesBounded(t *testing.T) {
	a := &stageDevice{id: protocol.SessionID{0xa}}
	big := make([]byte, maxStagedDown/2+1) // two of them pass the bound
	readEnvelopes(t, []*stageDevice{a}, []*protocol.Envelope{
		downTo(a, 1, big), downTo(a, 2, big), downTo(a, 3, big), downTo(a, 4, big), downTo(a, 5, big),
	})
	// In one read: "frames:DATA 1,DATA 2 | frames:DATA 3,DATA 4 |
	// frames:DATA 5"; a read that ends between them writes sooner.
	got := a.events()
	for _, w := range strings.Split(got, " | ") {
		if strings.Count(w, "DATA") > 2 {
			t.Fatalf("a write of %q (of %q): more than the bound held back", w, got)
		}
	}
	if !sameFrames(got, "frames:DATA 1,DATA 2,DATA 3,DATA 4,DATA 5") {
		t.Fatalf("got %q, want DATA 1 to 5 in order", got)
	}
}

// sameFrames accepts got when the reader took the envelopes in more than
// one read: the same frames and events in the same order, in more writes.
// A Queue or Flush (the per-frame path) never matches.
func sameFrames(got, want string) bool {
	flat := func(s string) string { return strings.ReplaceAll(s, " | frames:", ",") }
	return !strings.Contains(got, "queue:") && !strings.Contains(got, "flush") && flat(got) == flat(want)
}

// TestLookupForgetsUnbound: the reader's last lookup is not used once the
// session was unbound, rebound or the link failed.
func TestLookupForgetsUnbound(t *testing.T) {
	r := newTestBackend(t, Config{})
	l := newLink(r, "s1", "127.0.0.1:1")
	a := &stageDevice{id: protocol.SessionID{0xa}}
	b := &stageDevice{id: protocol.SessionID{0xa}} // a newer connection of the session
	l.bind(a.id, a)
	if d := l.lookup(a.id); d != a {
		t.Fatalf("lookup of a bound session: %v", d)
	}
	l.unbind(a.id, a)
	if d := l.lookup(a.id); d != nil {
		t.Fatalf("lookup after unbind: %v, want none", d)
	}
	l.bind(b.id, b)
	if d := l.lookup(b.id); d != b {
		t.Fatalf("lookup after a rebind: %v, want the new device", d)
	}
	l.fail(ErrLinkClosed)
	if d := l.lookup(b.id); d != nil {
		t.Fatalf("lookup after the link failed: %v, want none", d)
	}
}
