package backend

import (
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// Fencing Opens against moves (docs/links.md "Fencing"). Gossip views
// disagree for seconds, and a gateway whose view is stale still sends a
// device's Open to the shard its session has left. The epoch alone does
// not stop that Open: it proposes epoch 0 ("the shard picks"), and once
// the moved session is gone from the table the old shard would start a
// fresh one — the device's state reset, its upstream accepted (and ACKed)
// by a shard nobody moves it from, and a second live session of the
// device next to the moved one. So the old shard remembers what left:
//
//   - while a session hands its state over (Snapshot asked, or fenced),
//     every Open of its device that is not a migrated one is refused;
//   - once the fenced session leaves the table (the mover's Close, or the
//     resume window), its device stays marked as moved for ResumeWindow,
//     and Opens of it are refused the same way, unless this shard's own
//     ring names it the device's owner again (it came back here after a
//     crash or a ring change), or a migrated Open brings the session back.
//
// Refused is code 503: the device retries, and once its gateway's view
// catches up it reaches the shard that holds the session. Each refusal is
// counted in Stats.RefusedMoved.
//
// A migrated Open that meets a live binding of its device here (a HELLO
// that reached the new shard while the move was in flight) is refused
// with 409: the newer connection keeps the device, as in every takeover,
// and the gateway ends the moving one with 409 (not 503, which would make
// it resume and take the device back). Counted in Stats.Takeovers.

// movedSet is the devices whose sessions moved away, under Server.mu:
// per moved session a map entry and a queue entry (the device id and a
// time, about 100 bytes) for ResumeWindow; the janitor expires them.
type movedSet struct {
	at    map[string]time.Time
	queue []movedMark // in the order marked, for expiry
}

type movedMark struct {
	device string
	at     time.Time
}

func (m *movedSet) add(device string, now time.Time) {
	if m.at == nil {
		m.at = make(map[string]time.Time)
	}
	m.at[device] = now
	m.queue = append(m.queue, movedMark{device, now})
}

func (m *movedSet) has(device string) bool {
	_, ok := m.at[device]
	return ok
}

func (m *movedSet) forget(device string) { delete(m.at, device) }

// expire forgets the marks older than window.
func (m *movedSet) expire(now time.Time, window time.Duration) {
	k := 0
	for ; k < len(m.queue) && now.Sub(m.queue[k].at) >= window; k++ {
		mk := m.queue[k]
		if at, ok := m.at[mk.device]; ok && at.Equal(mk.at) {
			delete(m.at, mk.device)
		}
	}
	if k > 0 {
		m.queue = append(m.queue[:0], m.queue[k:]...)
	}
}

// handingOver reports whether s gave (or is giving) its state to a move.
// s.mu is held.
func (s *Session) handingOverLocked() bool { return s.state == stateFenced || s.upFenced }

// liveLocked reports whether a gateway connection holds s. s.mu is held.
func (s *Session) liveLocked() bool {
	return (s.state == stateOpening || s.state == stateAttached) && !s.upFenced
}

// fenceOpenLocked decides an Open against the moves of its device (see
// above): 0 admits it, otherwise the code to refuse it with. cur is the
// session of the Open's id, if any. srv.mu is held.
func (srv *Server) fenceOpenLocked(cur *Session, device string, reason OpenReason) (int, string) {
	s := cur
	if s == nil {
		s = srv.byDevice[device]
	}
	var handing, live bool
	if s != nil {
		s.mu.Lock()
		handing, live = s.handingOverLocked(), s.liveLocked()
		s.mu.Unlock()
	}
	if reason == OpenMigrated {
		srv.moved.forget(device)
		if live {
			srv.stats.takeovers.Add(1)
			return protocol.CodeConflict, "taken over"
		}
		return 0, ""
	}
	if handing || (s == nil && srv.moved.has(device) && !srv.ownsNow(device)) {
		srv.stats.refusedMoved.Add(1)
		return protocol.CodeUnavailable, "session moved to another shard"
	}
	return 0, ""
}

// ownsNow reports whether this shard's ring names it deviceID's owner
// (false without Config.Gossip or with an empty ring).
func (srv *Server) ownsNow(deviceID string) bool {
	g, ok := srv.cfg.Announcer.(*gossip)
	if !ok {
		return false
	}
	s, err := g.r.Place(deviceID, nil)
	return err == nil && s.Name == srv.cfg.Shard
}
