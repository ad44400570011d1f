package server

import (
	"context"
	"sync"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// Moving live sessions between shards (DESIGN.md "Sessions, ownership and
// movement"). When the ring changes — a shard announces draining, or a new
// shard joins — the mover walks this gateway's sessions and moves each one
// whose shard is no longer the one the ring names, at most MoveRate a
// second:
//
//	mover goroutine          old shard's link reader       new shard's link reader
//	pause the session's  ──▶ State: Open(migrated,     ──▶ Opened: switch link and epoch,
//	upstream, Snapshot       state, epoch+1) on the         replay the held frames in order,
//	(epoch e)                new shard's link               DownAck, Close (epoch e) on the old
//
// The device's connection is never touched. While a session moves its
// upstream DATA waits in a bounded hold buffer (MoveBuffer; beyond it the
// frame is dropped and counted, and a reliable one is not ACKed, as with
// an open circuit) and the highest downstream ACK is kept; both go to the
// new shard once it answered Opened. The old shard fences the session at
// Snapshot (it accepts no Up of it any more) and the new binding's higher
// epoch fences everything the old binding could still send. A move that
// fails (the device closed, a link failed, the new shard refused, no
// Opened within MoveTimeout) is counted by result; the device then gets
// 503 and resumes.
//
// Goroutines: one, the mover (owned by the remote backend, stopped by its
// close). Nothing runs or is armed per connection: the mover's tick paces
// the moves and expires the slow ones.
//
// Locks: c.pmu → moveTable.mu → c.wmu. onClosed (which may run inside a
// c.fail made under pmu) takes only moveTable.mu, so nothing may fail a
// connection while holding moveTable.mu.

// Pacing of the mover.
const (
	moveTick   = 10 * time.Millisecond  // the mover's tick: moves started, slow moves expired
	moveRescan = 100 * time.Millisecond // a pass that skipped sessions still opening looks again after this
	moveShards = 16                     // moveTable shards, by session id
)

// move is one session on its way to another shard.
type move struct {
	from     *link     // the old shard's link
	to       *link     // the new shard's link, once the State arrived
	epoch    uint64    // the old binding's epoch
	newEpoch uint64    // proposed in the Open to the new shard
	start    time.Time // Snapshot sent
	held     []byte    // upstream DATA held meanwhile, as device frames
	ackDown  uint32    // highest downstream ACK from the device meanwhile
	overflow bool      // a reliable frame was dropped: later ones would be gaps and are dropped too
}

type moveTable struct {
	mu sync.Mutex
	m  map[*conn]*move
}

// mover moves sessions after ring changes; see above.
type mover struct {
	r       *remoteBackend
	rate    float64 // moves started per second
	buffer  int     // MoveBuffer
	timeout time.Duration
	wake    chan struct{}
	tables  [moveShards]moveTable
}

func newMover(r *remoteBackend) *mover {
	cfg := &r.g.cfg
	mv := &mover{r: r, rate: cfg.MoveRate, buffer: cfg.MoveBuffer, timeout: cfg.MoveTimeout,
		wake: make(chan struct{}, 1)}
	for i := range mv.tables {
		mv.tables[i].m = map[*conn]*move{}
	}
	return mv
}

// rebalance asks the mover for a pass over every session (the ring
// changed).
func (mv *mover) rebalance() {
	select {
	case mv.wake <- struct{}{}:
	default:
	}
}

func (mv *mover) table(c *conn) *moveTable { return &mv.tables[c.sess.id[1]%moveShards] }

// get returns c's move, if it is moving.
func (mv *mover) get(c *conn) *move {
	t := mv.table(c)
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[c]
}

// take removes c's move and returns it (nil when it was not moving).
func (mv *mover) take(c *conn) *move {
	t := mv.table(c)
	t.mu.Lock()
	m := t.m[c]
	if m != nil {
		delete(t.m, c)
		c.moving.Store(false)
		mv.r.g.metrics.moving.Add(-1)
	}
	t.mu.Unlock()
	return m
}

// pass is one walk over the gateway's sessions after a ring change.
type pass struct {
	conns            []*conn
	next             int
	started, skipped int
	begun            time.Time
}

// run is the mover goroutine: passes paced by a token bucket of MoveRate
// per second (a burst of a tenth of a second), and the expiry of slow
// moves.
func (mv *mover) run(ctx context.Context) {
	t := time.NewTicker(moveTick)
	defer t.Stop()
	var p *pass
	var rescan time.Time
	burst := max(mv.rate/10, 1)
	tokens, last := burst, time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-mv.wake:
			p = mv.newPass()
		case now := <-t.C:
			tokens = min(tokens+mv.rate*now.Sub(last).Seconds(), burst)
			last = now
			mv.expire(now)
			if p == nil && !rescan.IsZero() && now.After(rescan) {
				p, rescan = mv.newPass(), time.Time{}
			}
			if p == nil {
				continue
			}
			tokens = mv.step(p, tokens)
			if p.next == len(p.conns) {
				mv.r.g.log.Info("sessions moving to their new shards", "started", p.started,
					"still_opening", p.skipped, "sessions", len(p.conns), "took", time.Since(p.begun))
				if p.skipped > 0 {
					rescan = now.Add(moveRescan)
				}
				p = nil
			}
		}
	}
}

func (mv *mover) newPass() *pass {
	return &pass{conns: mv.r.g.sessions.conns(), begun: time.Now()}
}

// step starts moves until the tokens or the pass run out and returns the
// tokens left.
func (mv *mover) step(p *pass, tokens float64) float64 {
	for p.next < len(p.conns) && tokens >= 1 {
		c := p.conns[p.next]
		p.conns[p.next] = nil
		p.next++
		switch mv.begin(c) {
		case beginMoved:
			tokens--
			p.started++
		case beginLater:
			p.skipped++
		}
	}
	return tokens
}

// What begin did with a session.
type beginResult uint8

const (
	beginNone  beginResult = iota // already on its owner, or gone
	beginMoved                    // Snapshot sent
	beginLater                    // not now (opening, moving, no owner, link busy): look again
)

// begin starts moving c when its shard is not the ring's owner of its
// device: it pauses c's upstream and asks the old shard for the state.
func (mv *mover) begin(c *conn) beginResult {
	c.pmu.Lock()
	defer c.unlockHandler()
	if c.isClosing() {
		return beginNone
	}
	if !c.ready.Load() || c.link == nil || c.moving.Load() {
		return beginLater
	}
	shard, _, err := mv.r.dir.Owner(c.sess.device)
	if err != nil {
		return beginLater
	}
	if shard == c.link.shard {
		return beginNone
	}
	m := &move{from: c.link, epoch: c.epoch.Load(), start: time.Now()}
	t := mv.table(c)
	t.mu.Lock()
	if c.isClosing() {
		t.mu.Unlock()
		return beginNone
	}
	t.m[c] = m
	c.moving.Store(true)
	t.mu.Unlock()
	mv.r.g.metrics.moving.Add(1)
	if err := m.from.send(&protocol.Envelope{Kind: protocol.LinkSnapshot, Session: c.sess.id, Epoch: m.epoch}); err != nil {
		mv.take(c) // nothing was held: pmu kept the handler out
		return beginLater
	}
	mv.r.g.metrics.movesStarted.Inc()
	return beginMoved
}

// hold keeps an upstream frame of a moving session; false when c is not
// moving (any more) and the frame goes to c.link as usual. The handler
// calls it with pmu held.
func (mv *mover) hold(c *conn, f *protocol.Frame) bool {
	t := mv.table(c)
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.m[c]
	if m == nil {
		return false
	}
	if f.Type == protocol.TypeAck {
		m.ackDown = max(m.ackDown, f.Seq)
		return true
	}
	if (f.Reliable() && m.overflow) || len(m.held)+protocol.FrameSize(len(f.Payload)) > mv.buffer {
		// Like an open circuit: dropped and counted; a reliable frame is
		// not ACKed, and the ones after it would be gaps.
		m.overflow = m.overflow || f.Reliable()
		mv.r.g.metrics.drop(dropMove)
		return true
	}
	m.held = protocol.AppendFrame(m.held, f.Type, f.Flags, f.Seq, f.Payload)
	return true
}

// state handles the old shard's State for c (link reader of l): the
// session opens on the shard the ring names now, with that state and a
// higher epoch.
func (mv *mover) state(l *link, c *conn, e *protocol.Envelope) {
	c.pmu.Lock()
	defer c.unlockHandler()
	m := mv.get(c)
	if m == nil || m.from != l || m.to != nil || e.Epoch != m.epoch {
		mv.r.g.metrics.drop(dropStale)
		return
	}
	x, err := decodeMoveState(e.Ext)
	if err != nil {
		mv.fail(c, moveSnapshot, err.Error())
		return
	}
	shard, addr, err := mv.r.dir.Owner(c.sess.device)
	if err != nil {
		mv.fail(c, moveNoShard, err.Error())
		return
	}
	ext, err := migratedOpen(&x, c.sess.device, mv.r.g.linkName())
	if err != nil {
		mv.fail(c, moveSnapshot, err.Error())
		return
	}
	to := mv.r.linkTo(shard, addr, int(c.sess.id[0]))
	if to == nil {
		mv.fail(c, moveLink, "no link to "+shard)
		return
	}
	// Under the table lock, so that a close of the device (which takes
	// the move there) sees the Open it must undo, or none.
	t := mv.table(c)
	t.mu.Lock()
	if t.m[c] != m {
		t.mu.Unlock()
		return
	}
	m.to, m.newEpoch = to, m.epoch+1
	to.bind(c.sess.id, c)
	err = to.send(&protocol.Envelope{Kind: protocol.LinkOpen, Session: c.sess.id, Epoch: m.newEpoch, Ext: ext})
	t.mu.Unlock()
	if err != nil {
		mv.fail(c, moveLink, err.Error())
	}
}

// binding returns c's link and epoch, read under the lock a move's end
// switches them under (for the close callback, which runs without pmu).
func (mv *mover) binding(c *conn) (*link, uint64) {
	t := mv.table(c)
	t.mu.Lock()
	defer t.mu.Unlock()
	return c.link, c.epoch.Load()
}

// opened handles the new shard's Opened for a moving c (link reader of
// l): the session's binding switches to l, the held frames follow in
// order, and the old shard lets the session go. false when the Opened is
// not the move's (the caller counts it stale).
func (mv *mover) opened(l *link, c *conn, e *protocol.Envelope) bool {
	c.pmu.Lock()
	defer c.unlockHandler()
	t := mv.table(c)
	t.mu.Lock()
	m := t.m[c]
	if m == nil || m.to != l || e.Epoch != m.newEpoch {
		t.mu.Unlock()
		return false
	}
	delete(t.m, c)
	c.link = l
	c.epoch.Store(e.Epoch)
	c.moving.Store(false)
	t.mu.Unlock()
	g := mv.r.g
	g.metrics.moving.Add(-1)
	if m.from != l {
		m.from.unbind(c.sess.id, c)
	}
	mv.replay(c, m)
	if m.from != l {
		ext, _ := protocol.EncodeLinkExt(&protocol.LinkExt{Reason: "moved"})
		_ = m.from.send(&protocol.Envelope{Kind: protocol.LinkClose, Session: c.sess.id, Epoch: m.epoch, Ext: ext})
	}
	g.metrics.moves[moveOK].Inc()
	g.metrics.moveDuration.Update(time.Since(m.start).Seconds())
	return true
}

// replay sends what the device sent during the move to the session's new
// binding, in the order it came. pmu is held.
func (mv *mover) replay(c *conn, m *move) {
	for b := m.held; len(b) > 0; {
		f, n, err := protocol.Decode(b, len(b))
		if err != nil {
			break // cannot happen: the gateway encoded them
		}
		mv.r.data(c, c.sess, f)
		b = b[n:]
	}
	if m.ackDown > 0 {
		mv.r.ack(c, c.sess, m.ackDown)
	}
}

// refused handles Refused from the move's new shard; false when it is not
// about the move (the caller handles it as usual).
func (mv *mover) refused(l *link, c *conn, e *protocol.Envelope) bool {
	m := mv.get(c)
	if m == nil || m.to != l || e.Epoch != m.newEpoch {
		return false
	}
	x, _ := protocol.DecodeLinkExt(e.Ext)
	code := protocol.CodeUnavailable
	if x.Code == protocol.CodeConflict {
		// A newer connection of the device holds it on the new shard
		// (backend/fence.go): this one lost the takeover. With 503 it
		// would resume and take the device back from the newer one.
		code = protocol.CodeConflict
	}
	mv.failCode(c, moveRefused, x.Reason, code)
	return true
}

// fail ends c's move with result: the device gets 503 and resumes (the
// old shard keeps the session for the resume window, fenced). No lock
// but possibly pmu is held.
func (mv *mover) fail(c *conn, result, why string) {
	mv.failCode(c, result, why, protocol.CodeUnavailable)
}

// failCode is fail with the device's ERROR code.
func (mv *mover) failCode(c *conn, result, why string, code int) {
	m := mv.take(c)
	if m == nil {
		return
	}
	if m.to != nil && m.to != m.from {
		m.to.unbind(c.sess.id, c)
	}
	mv.r.g.metrics.moves[result].Inc()
	mv.r.g.log.Warn("session move failed", "device", c.sess.device, "from", m.from.shard,
		"result", result, "err", why)
	if code == protocol.CodeConflict {
		c.fail(code, "session taken over")
		return
	}
	c.fail(code, "session move failed")
}

// closed ends the move of a connection that closed: the device's session
// is let go on both shards (it resumes from either one's state). It
// reports whether c was moving.
func (mv *mover) closed(c *conn) bool {
	m := mv.take(c)
	if m == nil {
		return false
	}
	mv.r.g.metrics.moves[moveClosed].Inc()
	if m.to != nil && m.to != m.from {
		m.to.unbind(c.sess.id, c)
		ext, _ := protocol.EncodeLinkExt(&protocol.LinkExt{Reason: "disconnected"})
		_ = m.to.send(&protocol.Envelope{Kind: protocol.LinkClose, Session: c.sess.id, Epoch: m.newEpoch, Ext: ext})
	}
	return true
}

// expire fails the moves older than MoveTimeout.
func (mv *mover) expire(now time.Time) {
	var late []*conn
	for i := range mv.tables {
		t := &mv.tables[i]
		t.mu.Lock()
		for c, m := range t.m {
			if now.Sub(m.start) > mv.timeout {
				late = append(late, c)
			}
		}
		t.mu.Unlock()
	}
	for _, c := range late {
		mv.fail(c, moveTimeout, "no Opened from the new shard in time")
	}
}
