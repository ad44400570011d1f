package backend

import (
	"sync"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// Crash checkpoints (DESIGN.md "Sessions, ownership and movement",
// docs/links.md "Checkpoints"). A shard that crashes takes its sessions'
// handler state with it. So that the next shard can go on from where a
// session was, the shard sends each attached session's state to the
// session's gateway in a Checkpoint envelope: once right after the
// session opened, then at most every CheckpointInterval while the
// session changed (a message handled, a subscription, Session.Checkpoint).
// The gateway keeps the last checkpoint and the reliable upstream frames
// after it (and the downstream DATA the device has not ACKed); when this
// shard fails it opens the session on the next shard as a migration from
// the checkpoint and replays those frames in order. The frames this shard
// had acknowledged come with Session.Replaying true: their effects on the
// device (replies) happened already.
//
// A checkpoint is the State of a move without the outbox (the gateway
// keeps the unacknowledged downstream itself) and without fencing: the
// session goes on here. It is taken on the session's worker, serially
// with its handler calls, so it is consistent with last_up. Checkpoints
// are best effort on the link (a full link queue drops one; the next one
// replaces it), bounded by MaxCheckpoint (a larger one is not sent and is
// counted: the gateway keeps the older one and the frames after it).

// checkpoints is the list of sessions changed since their last checkpoint,
// taken by the checkpointer every CheckpointInterval.
type checkpoints struct {
	mu    sync.Mutex
	dirty []*Session
	spare []*Session
}

// markDirtyLocked notes that s changed since its last checkpoint. s.mu is
// held; lock order s.mu → checkpoints.mu.
func (s *Session) markDirtyLocked() {
	if s.ckptDirty || s.srv.cfg.CheckpointInterval < 0 {
		return
	}
	s.ckptDirty = true
	c := &s.srv.ckpt
	c.mu.Lock()
	c.dirty = append(c.dirty, s)
	c.mu.Unlock()
}

// queueCheckpointLocked puts a checkpoint in s's mailbox unless one is
// there already or the session is not attached. s.mu is held.
func (s *Session) queueCheckpointLocked() {
	if s.ckptQueued || s.state != stateAttached || s.upFenced || s.srv.cfg.CheckpointInterval < 0 {
		return
	}
	s.ckptQueued = true
	s.enqueueLocked(event{kind: evCheckpoint, epoch: s.epoch})
}

// Checkpoint asks for a checkpoint of the session soon (after the handler
// call in progress, if any): for state changed outside handler calls,
// which the periodic checkpoints do not notice, or before a change that
// must not be lost to a crash. A no-op when checkpoints are off or no
// gateway holds the session.
func (s *Session) Checkpoint() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queueCheckpointLocked()
}

// Replaying reports, inside OnMessage, whether the message is replayed
// after the shard that had accepted it crashed: the session's state was
// restored from a checkpoint older than the message, and the device got
// its ACK and whatever that shard sent for it. A handler brings its state
// up to date and skips the effects it already had (the counter example
// sends no reply).
func (s *Session) Replaying() bool { return s.replaying.Load() }

// checkpointer queues a checkpoint for every session that changed, every
// CheckpointInterval.
func (srv *Server) checkpointer() {
	t := time.NewTicker(srv.cfg.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-srv.quit:
			return
		case <-t.C:
			srv.checkpointDirty()
		}
	}
}

func (srv *Server) checkpointDirty() {
	c := &srv.ckpt
	c.mu.Lock()
	list := c.dirty
	c.dirty, c.spare = c.spare[:0], nil
	c.mu.Unlock()
	for i, s := range list {
		s.mu.Lock()
		if s.ckptDirty { // not taken by a checkpoint since it changed
			s.ckptDirty = false
			s.queueCheckpointLocked()
		}
		s.mu.Unlock()
		list[i] = nil
	}
	c.mu.Lock()
	if c.spare == nil {
		c.spare = list[:0]
	}
	c.mu.Unlock()
}

// checkpoint sends the session's state to its gateway (worker of s).
func (srv *Server) checkpoint(s *Session, ev *event) {
	s.mu.Lock()
	s.ckptQueued = false
	current := s.checkpointCurrentLocked(ev.epoch)
	s.mu.Unlock()
	if !current {
		return
	}
	state, err := srv.handlerState(s)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.checkpointCurrentLocked(ev.epoch) {
		return
	}
	if err != nil {
		srv.stats.checkpointErrors.Add(1)
		srv.log.Warn("checkpoint: snapshot failed", "device", s.device, "err", err)
		return
	}
	// Every change so far is in this checkpoint (the worker of s makes
	// them, serially with this): a tick need not queue another.
	s.ckptDirty = false
	x := s.stateLocked(state)
	p := encodeExt(&x)
	if len(p) > srv.cfg.MaxCheckpoint {
		srv.stats.checkpointsTooLarge.Add(1)
		return
	}
	if s.sendLocked(protocol.LinkCheckpoint, s.lastUp, 0, nil, p, droppable) == nil {
		srv.stats.checkpoints.Add(1)
	}
}

// checkpointCurrentLocked: the checkpoint still concerns the live,
// attached binding (a session handing over its state is not checkpointed).
func (s *Session) checkpointCurrentLocked(epoch uint64) bool {
	return s.epoch == epoch && s.state == stateAttached && !s.upFenced
}
