package remote

import (
	"errors"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// Crash recovery (docs/links.md "Checkpoints", docs/guarantees.md "Shard
// crash"). When a shard's last link fails, the gateway takes the shard out
// of its ring (failover.go) and, for each session that was bound there,
// starts a move whose State comes from the session's keep instead of the
// dead shard: the last checkpoint, the downstream the device has not
// ACKed, and the reliable upstream after the checkpoint, which go to the
// new shard after its Opened, before what the device sends meanwhile. The
// move then ends like any other (mover.opened), and the device's
// connection is never touched. A session that cannot be recovered (no
// checkpoint, a gap in the kept frames, no other shard) gets 503 as
// before, counted by result.
//
// A shard has several links to each gateway, and they do not fail at the
// same instant: the sessions of a link that failed while the shard still
// had others wait (lost) until either the shard goes down for this
// gateway (recoverLost: they are recovered like the others) or
// LinkTimeout passes with the shard up (expireLost: it lost just that
// link and still holds the sessions, so their devices get 503 and
// resume there). Meanwhile their upstream is kept, not ACKed.

// lostBinding is a session whose link failed while its shard had others.
type lostBinding struct {
	dead  *link
	until time.Time
}

// awaitShard makes d, whose link dead failed while its shard has other
// links, wait for the shard's fate; false when there is nothing to
// recover it from (the caller fails the device).
func (r *Backend) awaitShard(dead *link, d Device) bool {
	if r.ctx.Err() != nil || d.Binding().keep.Load() == nil {
		return false
	}
	r.lostMu.Lock()
	r.lost[d] = lostBinding{dead: dead, until: time.Now().Add(r.cfg.LinkTimeout)}
	r.lostMu.Unlock()
	r.mover.poke() // it expires the binding if the shard's fate takes too long
	return true
}

// recoverLost recovers the waiting sessions of shard, which is down now.
func (r *Backend) recoverLost(shard string) {
	r.lostMu.Lock()
	var ds []Device
	var dead []*link
	for d, lb := range r.lost {
		if lb.dead.shard == shard {
			ds, dead = append(ds, d), append(dead, lb.dead)
			delete(r.lost, d)
		}
	}
	r.lostMu.Unlock()
	for i, d := range ds {
		if !r.mover.recover(dead[i], d) {
			d.Fail(protocol.CodeUnavailable, "backend link lost")
		}
	}
}

// expireLost fails the waiting sessions whose shard stayed up (mover
// tick).
func (r *Backend) expireLost(now time.Time) {
	r.lostMu.Lock()
	var late []Device
	for d, lb := range r.lost {
		if now.After(lb.until) {
			late = append(late, d)
			delete(r.lost, d)
		}
	}
	r.lostMu.Unlock()
	for _, d := range late {
		d.Fail(protocol.CodeUnavailable, "backend link lost")
	}
}

// recover reopens d's session, whose shard failed (dead was its link), on
// the shard the Directory names now. It reports whether d is taken care of;
// false: the caller fails the device with 503. Called by the failing
// link's goroutine, no lock held.
func (mv *mover) recover(dead *link, d Device) bool {
	d.Lock()
	defer d.Unlock()
	if d.Closing() || d.Opening() {
		return false
	}
	b := d.Binding()
	id, device := d.Session()
	t := mv.table(d)
	t.mu.Lock()
	m := t.m[d]
	t.mu.Unlock()
	switch {
	case m != nil && m.from == dead && m.to != nil && m.to != dead:
		return true // the new shard has the State: the move ends there
	case m != nil && m.from != dead:
		return false // the shard the session was moving to failed
	case m == nil && b.link != dead:
		return false
	}
	k := b.keep.Load()
	if k == nil {
		mv.r.m.recoveries[recoverNoCkpt].Inc()
		return false
	}
	p, err := mv.r.dir.Owner(device, b.tags)
	var to *link
	if err == nil && p.Shard != dead.shard {
		to = mv.r.linkTo(p.Shard, p.Addr, int(id[0]))
	}
	if to == nil {
		mv.r.m.recoveries[recoverNoShard].Inc()
		mv.r.log.Warn("session not recovered: no shard to reopen it on", "device", device, "shard", dead.shard)
		return false
	}
	ext, held, err := k.recoverOpen(device, mv.r.name, b.acked.Load(), mv.r.m)
	if err != nil {
		result := recoverNoCkpt
		if errors.Is(err, errKeepGap) {
			result = recoverGap
		}
		mv.r.m.recoveries[result].Inc()
		mv.r.log.Warn("session not recovered", "device", device, "shard", dead.shard, "err", err)
		return false
	}
	// Under the table lock, as in state: a close of the device sees the
	// Open it must undo, or none.
	t.mu.Lock()
	if t.m[d] != m {
		t.mu.Unlock()
		return false
	}
	if m == nil {
		m = &move{from: dead, epoch: b.epoch.Load(), start: time.Now()}
		t.m[d] = m
		b.moving.Store(true)
		mv.r.m.moving.Add(1)
		defer mv.poke() // it expires the recovery if it takes too long
	}
	m.cause = causeCrash // also a move whose old shard failed before its State: it goes on as a recovery
	// The kept frames have the lower seqs: they go first.
	m.held = append(held, m.held...)
	m.to, m.newEpoch, m.rule = to, m.epoch+1, p.Rule
	to.bind(id, d)
	err = to.send(&protocol.Envelope{Kind: protocol.LinkOpen, Session: id, Epoch: m.newEpoch, Ext: ext})
	t.mu.Unlock()
	mv.r.m.recoveries[recoverStarted].Inc()
	mv.r.m.movesStarted[causeCrash].Inc()
	if err != nil {
		mv.fail(d, moveLink, err.Error())
		return true
	}
	mv.r.m.placed(p)
	return true
}
