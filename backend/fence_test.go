package backend_test

import (
	"testing"

	"github.com/switchyard-gw/switchyard/backend/backendtest"
	"github.com/switchyard-gw/switchyard/protocol"
)

// refusedWith reads the next envelope of g: Refused with code.
func refusedWith(t *testing.T, g *backendtest.Gateway, code int) {
	t.Helper()
	if x := backendtest.DecodeExt(t, g.Expect(protocol.LinkRefused).Ext); x.Code != code {
		t.Fatalf("refused %+v, want code %d", x, code)
	}
}

// TestOpenFencedAgainstMoves (backend/fence.go): the old shard of a
// moving or moved session refuses, with 503 and counted, every Open of
// its device from a gateway with a stale view — resumes and new HELLOs,
// while the session is fenced and after the mover's Close — and takes a
// migrated Open that brings it back. The new shard refuses a migrated
// Open with 409 when a newer connection of the device is bound there, and
// with 503 when its epoch is older than one the shard has seen.
func TestOpenFencedAgainstMoves(t *testing.T) {
	h := &recorder{}
	srv := start(t, "a", h, nil)
	mover := backendtest.Dial(t, srv.Addr(), key, "gw-mover")
	stale := backendtest.Dial(t, srv.Addr(), key, "gw-stale")
	sid := backendtest.SID(1)
	openSession(t, mover, sid, "dev", 0, backendtest.OpenOpts{})
	mover.Control(protocol.LinkSnapshot, sid, 1, 0, "")
	mover.Expect(protocol.LinkState)

	// Fenced: a resume of the session and a new session of the device.
	stale.Open(sid, "dev", 0, backendtest.OpenOpts{Reason: "resumed"})
	refusedWith(t, stale, protocol.CodeUnavailable)
	stale.Open(backendtest.SID(2), "dev", 0, backendtest.OpenOpts{})
	refusedWith(t, stale, protocol.CodeUnavailable)

	// Moved: the mover's Close takes the session out of the table; the
	// device stays fenced here.
	mover.Control(protocol.LinkClose, sid, 1, 0, "moved")
	waitFor(t, "the moved session leaves the table", func() bool { return srv.Session("dev") == nil })
	stale.Open(sid, "dev", 0, backendtest.OpenOpts{Reason: "resumed"})
	refusedWith(t, stale, protocol.CodeUnavailable)
	stale.Open(backendtest.SID(3), "dev", 0, backendtest.OpenOpts{})
	refusedWith(t, stale, protocol.CodeUnavailable)
	if st := srv.Stats(); st.RefusedMoved != 4 || st.Sessions != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Other devices are not affected.
	openSession(t, stale, backendtest.SID(4), "other", 0, backendtest.OpenOpts{})

	// The session moves back here (migrated, a higher epoch): taken.
	openSession(t, mover, sid, "dev", 3, backendtest.OpenOpts{Reason: "migrated", LastUp: 0})

	// A migrated Open for a device a newer connection holds here: 409,
	// and the newer binding keeps the device.
	newer := backendtest.Dial(t, srv.Addr(), key, "gw-newer")
	openSession(t, newer, backendtest.SID(5), "racer", 0, backendtest.OpenOpts{})
	mover.Open(backendtest.SID(6), "racer", 2, backendtest.OpenOpts{Reason: "migrated"})
	refusedWith(t, mover, protocol.CodeConflict)
	if s := srv.Session("racer"); s == nil || s.ID() != backendtest.SID(5) || !s.Attached() {
		t.Fatalf("the newer binding lost the device")
	}
	if st := srv.Stats(); st.Takeovers != 1 {
		t.Fatalf("takeovers %d, want 1", st.Takeovers)
	}

	// A migrated Open older than what the shard has seen of the session:
	// 503, so that the gateway lets the device resume (409 would end it).
	newer.Control(protocol.LinkClose, backendtest.SID(5), 1, 0, "gone")
	waitFor(t, "detached", func() bool { return !srv.Session("racer").Attached() })
	mover.Open(backendtest.SID(5), "racer", 1, backendtest.OpenOpts{Reason: "migrated"})
	refusedWith(t, mover, protocol.CodeUnavailable)
}
