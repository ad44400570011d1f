package remote

import (
	"context"
	"sync"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// Moving live sessions between shards: see doc.go for the protocol, the
// goroutine and the locks.

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
	cause    string    // why it moves: causeLeave, causeJoin, causeCanary, causeCrash
	rule     string    // the canary rule of the new placement ("" when none), the binding's once it ends
	held     []byte    // upstream DATA held meanwhile, as device frames
	ackDown  uint32    // highest downstream ACK from the device meanwhile
	overflow bool      // a reliable frame was dropped: later ones would be gaps and are dropped too
}

type moveTable struct {
	mu sync.Mutex
	m  map[Device]*move
}

// mover moves sessions after ring changes (doc.go).
type mover struct {
	r       *Backend
	rate    float64 // moves started per second
	buffer  int     // MoveBuffer
	timeout time.Duration
	wake    chan struct{} // a ring change: start a pass
	work    chan struct{} // a move or a lost binding began elsewhere: tick again
	tables  [moveShards]moveTable
}

func newMover(r *Backend) *mover {
	cfg := &r.cfg
	mv := &mover{r: r, rate: cfg.MoveRate, buffer: cfg.MoveBuffer, timeout: cfg.MoveTimeout,
		wake: make(chan struct{}, 1), work: make(chan struct{}, 1)}
	for i := range mv.tables {
		mv.tables[i].m = map[Device]*move{}
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

// poke wakes a mover that stopped ticking: a move or a lost binding now
// waits for its expiry.
func (mv *mover) poke() {
	select {
	case mv.work <- struct{}{}:
	default:
	}
}

func (mv *mover) table(d Device) *moveTable {
	id, _ := d.Session()
	return &mv.tables[id[1]%moveShards]
}

// get returns d's move, if it is moving.
func (mv *mover) get(d Device) *move {
	t := mv.table(d)
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[d]
}

// take removes d's move and returns it (nil when it was not moving).
func (mv *mover) take(d Device) *move {
	t := mv.table(d)
	t.mu.Lock()
	m := t.m[d]
	if m != nil {
		delete(t.m, d)
		d.Binding().moving.Store(false)
		mv.r.m.moving.Add(-1)
	}
	t.mu.Unlock()
	return m
}

// pass is one walk over the gateway's sessions after a ring change.
type pass struct {
	devices          []Device
	next             int
	started, skipped int
	begun            time.Time
}

// run is the mover goroutine: passes paced by a token bucket of MoveRate
// per second (a burst of a tenth of a second), and the expiry of slow
// moves and lost bindings. It ticks only while it has any of those; an
// idle gateway's mover waits for a ring change or a poke instead of
// waking 100 times a second.
func (mv *mover) run(ctx context.Context) {
	t := time.NewTimer(moveTick)
	defer t.Stop()
	var p *pass
	var rescan time.Time
	burst := max(mv.rate/10, 1)
	tokens, last := burst, time.Now()
	ticking := true
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return
		case <-mv.wake:
			p = mv.newPass()
		case <-mv.work:
		case now = <-t.C:
			ticking = false
		}
		if !now.IsZero() {
			tokens = min(tokens+mv.rate*now.Sub(last).Seconds(), burst)
			last = now
			mv.expire(now)
			mv.r.expireLost(now)
			if p == nil && !rescan.IsZero() && now.After(rescan) {
				p, rescan = mv.newPass(), time.Time{}
			}
			if p != nil {
				tokens = mv.step(p, tokens)
				if p.next == len(p.devices) {
					mv.r.log.Info("sessions moving to their new shards", "started", p.started,
						"still_opening", p.skipped, "sessions", len(p.devices), "took", time.Since(p.begun))
					if p.skipped > 0 {
						rescan = now.Add(moveRescan)
					}
					p = nil
				}
			}
		}
		if !ticking && (p != nil || !rescan.IsZero() || mv.pending()) {
			t.Reset(moveTick)
			ticking = true
		}
	}
}

// pending reports whether moves or lost bindings wait for their expiry.
func (mv *mover) pending() bool {
	if mv.r.m.moving.Load() > 0 {
		return true
	}
	mv.r.lostMu.Lock()
	n := len(mv.r.lost)
	mv.r.lostMu.Unlock()
	return n > 0
}

func (mv *mover) newPass() *pass {
	return &pass{devices: mv.r.cfg.Devices(), begun: time.Now()}
}

// step starts moves until the tokens or the pass run out and returns the
// tokens left.
func (mv *mover) step(p *pass, tokens float64) float64 {
	for p.next < len(p.devices) && tokens >= 1 {
		d := p.devices[p.next]
		p.devices[p.next] = nil
		p.next++
		switch mv.begin(d) {
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

// begin starts moving d when its shard is not the one the Directory
// names for its device and tags: it pauses d's upstream and asks the old shard for the state.
func (mv *mover) begin(d Device) beginResult {
	d.Lock()
	defer d.Unlock()
	if d.Closing() {
		return beginNone
	}
	// Under Lock, a connection that is not closing and has a link is
	// either opening (its shard has not answered yet) or ready.
	b := d.Binding()
	if b.link == nil || d.Opening() || b.moving.Load() {
		return beginLater
	}
	id, device := d.Session()
	p, err := mv.r.dir.Owner(device, b.tags)
	if err != nil {
		return beginLater
	}
	if p.Shard == b.link.shard {
		return beginNone
	}
	m := &move{from: b.link, epoch: b.epoch.Load(), start: time.Now(), cause: mv.cause(b, p)}
	t := mv.table(d)
	t.mu.Lock()
	if d.Closing() {
		t.mu.Unlock()
		return beginNone
	}
	t.m[d] = m
	b.moving.Store(true)
	t.mu.Unlock()
	mv.r.m.moving.Add(1)
	if err := m.from.send(&protocol.Envelope{Kind: protocol.LinkSnapshot, Session: id, Epoch: m.epoch}); err != nil {
		mv.take(d) // nothing was held: Lock kept the handler out
		return beginLater
	}
	mv.r.m.movesStarted[m.cause].Inc()
	return beginMoved
}

// cause says why a session bound by b moves to p (a move's cause label).
// The Directory may know the shards it places on (ShardSet, as
// RingDirectory does); without, a shard that left counts as "join".
func (mv *mover) cause(b *Binding, p Placement) string {
	if ss, ok := mv.r.dir.(ShardSet); ok && !ss.HasShard(b.link.shard) {
		return causeLeave
	}
	if p.Rule != b.rule {
		return causeCanary
	}
	return causeJoin
}

// hold keeps an upstream frame of a moving session; false when d is not
// moving (any more) and the frame goes to its link as usual. The handler
// calls it with the device's Lock held.
func (mv *mover) hold(d Device, f *protocol.Frame) bool {
	t := mv.table(d)
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.m[d]
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
		mv.r.m.drop(dropMove)
		return true
	}
	m.held = protocol.AppendFrame(m.held, f.Type, f.Flags, f.Seq, f.Payload)
	return true
}

// state handles the old shard's State for d (link reader of l): the
// session opens on the shard the Directory names now, with that state and a
// higher epoch.
func (mv *mover) state(l *link, d Device, e *protocol.Envelope) {
	d.Lock()
	defer d.Unlock()
	m := mv.get(d)
	if m == nil || m.from != l || m.to != nil || e.Epoch != m.epoch {
		mv.r.m.drop(dropStale)
		return
	}
	x, err := decodeMoveState(e.Ext)
	if err != nil {
		mv.fail(d, moveSnapshot, err.Error())
		return
	}
	id, device := d.Session()
	p, err := mv.r.dir.Owner(device, d.Binding().tags)
	if err != nil {
		mv.fail(d, moveNoShard, err.Error())
		return
	}
	ext, err := migratedOpen(&x, device, mv.r.name)
	if err != nil {
		mv.fail(d, moveSnapshot, err.Error())
		return
	}
	to := mv.r.linkTo(p.Shard, p.Addr, int(id[0]))
	if to == nil {
		mv.fail(d, moveLink, "no link to "+p.Shard)
		return
	}
	// Under the table lock, so that a close of the device (which takes
	// the move there) sees the Open it must undo, or none.
	t := mv.table(d)
	t.mu.Lock()
	if t.m[d] != m {
		t.mu.Unlock()
		return
	}
	m.to, m.newEpoch, m.rule = to, m.epoch+1, p.Rule
	to.bind(id, d)
	err = to.send(&protocol.Envelope{Kind: protocol.LinkOpen, Session: id, Epoch: m.newEpoch, Ext: ext})
	t.mu.Unlock()
	if err != nil {
		mv.fail(d, moveLink, err.Error())
		return
	}
	mv.r.m.placed(p)
}

// binding returns d's link and epoch, read under the lock a move's end
// switches them under (for the close callback, which runs without Lock).
func (mv *mover) binding(d Device) (*link, uint64) {
	t := mv.table(d)
	t.mu.Lock()
	defer t.mu.Unlock()
	b := d.Binding()
	return b.link, b.epoch.Load()
}

// opened handles the new shard's Opened for a moving d (link reader of
// l): the session's binding switches to l, the held frames follow in
// order, and the old shard lets the session go. false when the Opened is
// not the move's (the caller counts it stale).
func (mv *mover) opened(l *link, d Device, e *protocol.Envelope) bool {
	d.Lock()
	defer d.Unlock()
	t := mv.table(d)
	t.mu.Lock()
	m := t.m[d]
	if m == nil || m.to != l || e.Epoch != m.newEpoch {
		t.mu.Unlock()
		return false
	}
	delete(t.m, d)
	b := d.Binding()
	b.link = l
	b.rule = m.rule
	b.epoch.Store(e.Epoch)
	b.moving.Store(false)
	t.mu.Unlock()
	x, _ := protocol.DecodeLinkExt(e.Ext)
	b.keepOn(x.Ckpt, mv.r.m)
	mv.r.m.moving.Add(-1)
	id, _ := d.Session()
	if m.from != l {
		m.from.unbind(id, d)
	}
	mv.replay(d, m)
	if m.from != l {
		ext, _ := protocol.EncodeLinkExt(&protocol.LinkExt{Reason: "moved"})
		_ = m.from.send(&protocol.Envelope{Kind: protocol.LinkClose, Session: id, Epoch: m.epoch, Ext: ext})
	}
	mv.r.m.moves[moveOK].Inc()
	mv.r.m.moveDuration[m.cause].Update(time.Since(m.start).Seconds())
	return true
}

// replay sends what the device sent during the move to the session's new
// binding, in the order it came. Lock is held.
func (mv *mover) replay(d Device, m *move) {
	for b := m.held; len(b) > 0; {
		f, n, err := protocol.Decode(b, len(b))
		if err != nil {
			break // cannot happen: the gateway encoded them
		}
		mv.r.Data(d, f)
		b = b[n:]
	}
	if m.ackDown > 0 {
		mv.r.Ack(d, m.ackDown)
	}
	mv.r.Flush(d)
}

// refused handles Refused from the move's new shard; false when it is not
// about the move (the caller handles it as usual).
func (mv *mover) refused(l *link, d Device, e *protocol.Envelope) bool {
	m := mv.get(d)
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
	mv.failCode(d, moveRefused, x.Reason, code)
	return true
}

// fail ends d's move with result: the device gets 503 and resumes (the
// old shard keeps the session for the resume window, fenced). No lock
// but possibly the device's Lock is held.
func (mv *mover) fail(d Device, result, why string) {
	mv.failCode(d, result, why, protocol.CodeUnavailable)
}

// failCode is fail with the device's ERROR code.
func (mv *mover) failCode(d Device, result, why string, code int) {
	m := mv.take(d)
	if m == nil {
		return
	}
	id, device := d.Session()
	if m.to != nil && m.to != m.from {
		m.to.unbind(id, d)
	}
	mv.r.m.moves[result].Inc()
	mv.r.log.Warn("session move failed", "device", device, "from", m.from.shard,
		"result", result, "err", why)
	if code == protocol.CodeConflict {
		d.Fail(code, "session taken over")
		return
	}
	d.Fail(code, "session move failed")
}

// closed ends the move of a connection that closed: the device's session
// is let go on both shards (it resumes from either one's state). It
// reports whether d was moving.
func (mv *mover) closed(d Device) bool {
	m := mv.take(d)
	if m == nil {
		return false
	}
	mv.r.m.moves[moveClosed].Inc()
	if m.to != nil && m.to != m.from {
		id, _ := d.Session()
		m.to.unbind(id, d)
		_ = m.to.send(&protocol.Envelope{Kind: protocol.LinkClose, Session: id, Epoch: m.newEpoch, Ext: disconnectedExt})
	}
	return true
}

// expire fails the moves older than MoveTimeout.
func (mv *mover) expire(now time.Time) {
	var late []Device
	for i := range mv.tables {
		t := &mv.tables[i]
		t.mu.Lock()
		for d, m := range t.m {
			if now.Sub(m.start) > mv.timeout {
				late = append(late, d)
			}
		}
		t.mu.Unlock()
	}
	for _, d := range late {
		mv.fail(d, moveTimeout, "no Opened from the new shard in time")
	}
}
