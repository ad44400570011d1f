package server

import (
	"sync"
	"testing"

	"github.com/switchyard-gw/switchyard/protocol"
)

// switchDir places every device on one shard, which the test can change.
type switchDir struct {
	mu          sync.Mutex
	shard, addr string
}

func (d *switchDir) set(s *fakeShard) {
	d.mu.Lock()
	d.shard, d.addr = s.name, s.addr()
	d.mu.Unlock()
}

func (d *switchDir) Owner(string, map[string]string) (Placement, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Placement{Shard: d.shard, Addr: d.addr}, nil
}

// TestMoveFailureReleasesSession: when a move fails while the mover holds
// the connection's pmu (here the old shard cannot hand over the state),
// the device gets 503, and the close that this runs on the same goroutine
// still ends the session's binding: the old shard gets Close and the
// session is detached, its resume window started.
func TestMoveFailureReleasesSession(t *testing.T) {
	s1 := startFakeShard(t, "s1", false)
	s2 := startFakeShard(t, "s2", false)
	dir := &switchDir{}
	dir.set(s1)
	g := startGateway(t, Config{Backends: dir, LinkKeys: [][]byte{fakeShardKey}})

	d, open := openOn(t, g, s1, "dev")

	dir.set(s2)
	g.Rebalance()
	snap := s1.next(t, protocol.LinkSnapshot)
	ext, err := protocol.Marshal(&protocol.SessionState{LinkExt: protocol.LinkExt{Code: protocol.CodeInternal, Reason: "snapshot: boom"}})
	if err != nil {
		t.Fatal(err)
	}
	snap.l.send(&protocol.Envelope{Kind: protocol.LinkState, Session: snap.e.Session, Epoch: snap.e.Epoch, Ext: ext})
	d.expectError(protocol.CodeUnavailable, true)

	if env := s1.next(t, protocol.LinkClose); env.e.Session != open.e.Session {
		t.Fatalf("Close for another session")
	}
	waitFor(t, "session detached", func() bool {
		s := g.sessions.get("dev")
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.conn == nil
	})
	if got := metric(g, `switchyard_session_moves_total{result="snapshot"}`); got != 1 {
		t.Fatalf(`switchyard_session_moves_total{result="snapshot"} = %v, want 1`, got)
	}
}

// causeDir is a switchDir that also says which shards it places on
// (remote.ShardSet) and can name a canary rule.
type causeDir struct {
	switchDir
	gone string // a shard no longer placed on
	rule string
}

func (d *causeDir) Owner(id string, tags map[string]string) (Placement, error) {
	p, err := d.switchDir.Owner(id, tags)
	d.mu.Lock()
	p.Rule = d.rule
	d.mu.Unlock()
	return p, err
}

func (d *causeDir) HasShard(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return name != d.gone
}

// TestMoveCauses: a move is counted by its cause when it starts, and its
// duration by cause when it ends on the new shard: the old shard left the
// placement (leave), the placement changed with the shard still there
// (join), a canary rule now places the device (canary).
func TestMoveCauses(t *testing.T) {
	tests := []struct {
		cause string
		move  func(d *causeDir, to *fakeShard)
	}{
		{"leave", func(d *causeDir, to *fakeShard) { d.gone = "s1"; d.shard, d.addr = to.name, to.addr() }},
		{"join", func(d *causeDir, to *fakeShard) { d.shard, d.addr = to.name, to.addr() }},
		{"canary", func(d *causeDir, to *fakeShard) { d.rule = "r1"; d.shard, d.addr = to.name, to.addr() }},
	}
	for _, tt := range tests {
		t.Run(tt.cause, func(t *testing.T) {
			s1 := startFakeShard(t, "s1", false)
			s2 := startFakeShard(t, "s2", false)
			dir := &causeDir{}
			dir.set(s1)
			g := startGateway(t, Config{Backends: dir, LinkKeys: [][]byte{fakeShardKey}})
			openOn(t, g, s1, "dev")

			dir.mu.Lock()
			tt.move(dir, s2)
			dir.mu.Unlock()
			g.Rebalance()
			snap := s1.next(t, protocol.LinkSnapshot)
			waitMetric(t, g, `switchyard_session_moves_started_total{cause="`+tt.cause+`"}`, 1)
			waitMetric(t, g, `switchyard_sessions_by_state{state="moving"}`, 1)
			ext, _ := protocol.Marshal(&protocol.SessionState{})
			snap.l.send(&protocol.Envelope{Kind: protocol.LinkState, Session: snap.e.Session, Epoch: snap.e.Epoch, Ext: ext})
			mig := s2.next(t, protocol.LinkOpen)
			opened, _ := protocol.EncodeLinkExt(&protocol.LinkExt{Reason: "migrated"})
			mig.l.send(&protocol.Envelope{Kind: protocol.LinkOpened, Session: mig.e.Session, Epoch: mig.e.Epoch, Ext: opened})
			waitMetric(t, g, `switchyard_session_moves_total{result="ok"}`, 1)
			waitMetric(t, g, `switchyard_session_move_duration_seconds_count{cause="`+tt.cause+`"}`, 1)
			waitMetric(t, g, `switchyard_sessions_by_state{state="moving"}`, 0)
			for _, other := range tests {
				if other.cause != tt.cause && metric(g, `switchyard_session_moves_started_total{cause="`+other.cause+`"}`) != 0 {
					t.Fatalf("move counted as %s too", other.cause)
				}
			}
		})
	}
}
