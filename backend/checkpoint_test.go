package backend_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/backend/backendtest"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
)

// checkpointThrough reads g (answering Pings, collecting what else
// arrives) until a Checkpoint of sid with last_up ≥ lastUp was set aside,
// and returns its ext.
func checkpointThrough(t *testing.T, g *backendtest.Gateway, sid protocol.SessionID, lastUp uint32) backendtest.Ext {
	t.Helper()
	var found *protocol.Envelope
	waitForWithin(t, poll.Patience, fmt.Sprintf("a checkpoint through %d", lastUp), func() bool {
		g.TryNext(10 * time.Millisecond)
		for _, e := range g.Checkpoints() {
			if e.Session == sid && e.Seq >= lastUp {
				found = &e
				return true
			}
		}
		return false
	})
	x := backendtest.DecodeExt(t, found.Ext)
	if x.LastUp != found.Seq {
		t.Fatalf("checkpoint seq %d, ext last_up %d", found.Seq, x.LastUp)
	}
	return x
}

// A session sends its gateway a checkpoint once it opened (Opened says
// so) and again after it changed: the handler's snapshot, last_up,
// down_seq, tags and topics, no outbox.
func TestCheckpointAfterOpenAndChange(t *testing.T) {
	h := &recorder{}
	h.onMsg = func(s *backend.Session, p []byte, rel bool) error {
		if string(p) == "sub" {
			return s.Subscribe("room")
		}
		return s.Send(p, true)
	}
	srv := start(t, "a", h, func(c *backend.Config) { c.CheckpointInterval = 20 * time.Millisecond })
	g := backendtest.Dial(t, srv.Addr(), key, "gw")
	sid := backendtest.SID(1)
	op := openSession(t, g, sid, "dev", 0, backendtest.OpenOpts{Tags: map[string]string{"fw": "2"}})
	if !backendtest.DecodeExt(t, op.Ext).Ckpt {
		t.Fatal("Opened does not announce checkpoints")
	}
	x := checkpointThrough(t, g, sid, 0)
	if string(x.State) != "snap-dev" || x.Tags["fw"] != "2" || len(x.Outbox) != 0 {
		t.Fatalf("first checkpoint %+v", x)
	}
	for seq := uint32(1); seq <= 3; seq++ {
		g.Up(sid, 1, seq, true, fmt.Sprint("m", seq))
	}
	g.Up(sid, 1, 4, true, "sub")
	x = checkpointThrough(t, g, sid, 4)
	if x.DownSeq != 3 || len(x.Outbox) != 0 || len(x.Topics) != 1 || x.Topics[0] != "room" {
		t.Fatalf("checkpoint after changes %+v", x)
	}
	n := srv.Stats().Checkpoints
	// Nothing changed: no more checkpoints over a few intervals (what is
	// still on its way of the traffic above is read and let go).
	for range 5 {
		if e, ok := g.TryNext(20 * time.Millisecond); ok && e.Kind != protocol.LinkUpAck && e.Kind != protocol.LinkDown {
			t.Fatalf("kind %d", e.Kind)
		}
	}
	if m := srv.Stats().Checkpoints; m != n {
		t.Fatalf("%d checkpoints of an unchanged session", m-n)
	}
	// On demand.
	srv.Session("dev").Checkpoint()
	waitForWithin(t, poll.Patience, "an on-demand checkpoint", func() bool {
		g.TryNext(10 * time.Millisecond)
		return srv.Stats().Checkpoints > n
	})
}

// Checkpoints off: Opened says so and none is sent.
func TestCheckpointsOff(t *testing.T) {
	h := &recorder{}
	srv := start(t, "a", h, func(c *backend.Config) { c.CheckpointInterval = -1 })
	g := backendtest.Dial(t, srv.Addr(), key, "gw")
	g.SeeCheckpoints = true
	sid := backendtest.SID(1)
	if op := openSession(t, g, sid, "dev", 0, backendtest.OpenOpts{}); backendtest.DecodeExt(t, op.Ext).Ckpt {
		t.Fatal("Opened announces checkpoints")
	}
	g.Up(sid, 1, 1, true, "m1")
	ackThrough(t, g, sid, 1)
	srv.Session("dev").Checkpoint()
	g.Quiet(100 * time.Millisecond)
	if n := srv.Stats().Checkpoints; n != 0 {
		t.Fatalf("%d checkpoints", n)
	}
}

// A checkpoint larger than MaxCheckpoint is not sent, and counted.
func TestCheckpointTooLarge(t *testing.T) {
	h := &recorder{}
	srv := start(t, "a", h, func(c *backend.Config) { c.MaxCheckpoint = 8 })
	g := backendtest.Dial(t, srv.Addr(), key, "gw")
	g.SeeCheckpoints = true
	openSession(t, g, backendtest.SID(1), "dev", 0, backendtest.OpenOpts{})
	waitForWithin(t, poll.Patience, "the too-large checkpoint counted", func() bool { return srv.Stats().CheckpointsTooLarge == 1 })
	g.Quiet(50 * time.Millisecond)
	if n := srv.Stats().Checkpoints; n != 0 {
		t.Fatalf("%d checkpoints sent", n)
	}
}

// After a crash the gateway opens the session from its checkpoint as a
// migration and replays the frames after it: those the crashed shard had
// accepted (through Replay) are handled with Replaying true, the rest as
// usual; each is accepted once, in order.
func TestReplayAfterCrash(t *testing.T) {
	h := &recorder{}
	var replaying []bool
	h.onMsg = func(s *backend.Session, p []byte, rel bool) error {
		replaying = append(replaying, s.Replaying())
		if s.Replaying() {
			return nil
		}
		return s.Send(p, true)
	}
	srv := start(t, "b", h, nil)
	g := backendtest.Dial(t, srv.Addr(), key, "gw")
	sid := backendtest.SID(1)
	op := openSession(t, g, sid, "dev", 5, backendtest.OpenOpts{Reason: "migrated", State: []byte("ck"),
		LastUp: 3, DownSeq: 7, Replay: 5})
	if y := backendtest.DecodeExt(t, op.Ext); y.LastUp != 3 || y.DownSeq != 7 {
		t.Fatalf("opened %+v", y)
	}
	for seq := uint32(3); seq <= 6; seq++ { // 3 is covered by the checkpoint
		g.Up(sid, 5, seq, true, fmt.Sprint("m", seq))
	}
	// UpAcks (3 is re-ACKed as a duplicate) and the one reply, in an
	// order the worker's batching decides.
	var downs []protocol.Envelope
	for acked := uint32(0); acked < 6 || len(downs) == 0; {
		switch e := g.Next(); e.Kind {
		case protocol.LinkUpAck:
			acked = max(acked, e.Seq)
		case protocol.LinkDown:
			downs = append(downs, e)
		default:
			t.Fatalf("kind %d", e.Kind)
		}
	}
	if len(downs) != 1 || downs[0].Seq != 8 || string(downs[0].Payload) != "m6" {
		t.Fatalf("downs %+v: want only the reply to m6, numbered after down_seq 7", downs)
	}
	if fmt.Sprint(replaying) != "[true true false]" || !h.has("open dev migrated ck") {
		t.Fatalf("replaying %v, calls %q", replaying, h.lines())
	}
	if st := srv.Stats(); st.Replayed != 2 || st.DropDuplicate != 1 {
		t.Fatalf("stats %+v", st)
	}
}
