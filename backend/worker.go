package backend

import (
	"sync"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// Handler calls run on a fixed pool of Config.Workers goroutines, not on
// a goroutine per session. Every session has a mailbox (a slice of
// events under Session.mu, at most MaxMailbox Up events plus the rare
// control events); a session with mail is in the run queue exactly once
// (Session.scheduled), so one worker at a time drains it: calls are
// serial per session and concurrent across sessions. A worker runs at
// most workBatch events of a session, sends one cumulative UpAck for
// them, and puts the session back at the tail if more arrived, so a busy
// session cannot starve the others. The run queue holds each session at
// most once, so it is bounded by the number of sessions.
//
//	reader ─▶ mailbox (per session) ─▶ run queue ─▶ worker: handler calls ─▶ UpAck
const workBatch = 64

// eventKind is a mailbox event's kind.
type eventKind uint8

const (
	evUp         eventKind = iota // an upstream message
	evOpen                        // OnOpen, then Opened or Refused
	evSnapshot                    // Snapshotter, then State
	evCheckpoint                  // Snapshotter, then Checkpoint (checkpoint.go)
	evClose                       // OnClose; always last
)

// event is one mailbox entry.
type event struct {
	kind       eventKind
	reliable   bool
	reason     OpenReason
	seq        uint32
	helloLast  uint32 // Open: the device's HELLO last (ext down_seq)
	downAtOpen uint32 // Open: downSeq when bound; outbox to resend is (helloLast, downAtOpen]
	epoch      uint64 // Open, Snapshot: the binding it was queued for
	payload    []byte // Up payload, Open state
	text       string // Close reason
	// restored: an Open that delivers a migrated state which a Close had
	// overtaken; the device's HELLO last still counts for the downstream.
	restored bool
}

// runQueue is the FIFO of sessions with mail.
type runQueue struct {
	mu      sync.Mutex
	cond    sync.Cond
	q       []*Session
	head    int
	closed  bool // workers exit once the queue is empty
	aborted bool // workers drop what is left and exit
}

func newRunQueue() *runQueue {
	r := &runQueue{}
	r.cond.L = &r.mu
	return r
}

func (r *runQueue) push(s *Session) {
	r.mu.Lock()
	r.q = append(r.q, s)
	r.mu.Unlock()
	r.cond.Signal()
}

// pop waits for a session; false when the queue is closed and empty.
func (r *runQueue) pop() (*Session, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.head == len(r.q) && !r.closed {
		r.cond.Wait()
	}
	if r.head == len(r.q) || r.aborted {
		return nil, false
	}
	s := r.q[r.head]
	r.q[r.head] = nil
	r.head++
	if r.head == len(r.q) {
		r.q, r.head = r.q[:0], 0
	} else if r.head > 1024 && r.head > len(r.q)/2 {
		n := copy(r.q, r.q[r.head:])
		clear(r.q[n:])
		r.q, r.head = r.q[:n], 0
	}
	return s, true
}

// close lets the workers exit once the queue is empty; abort at once.
func (r *runQueue) close(abort bool) {
	r.mu.Lock()
	r.closed = true
	r.aborted = r.aborted || abort
	r.mu.Unlock()
	r.cond.Broadcast()
}

// idle reports whether no session waits.
func (r *runQueue) idle() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.head == len(r.q)
}

// worker is one handler goroutine.
func (srv *Server) worker() {
	for {
		s, ok := srv.runq.pop()
		if !ok {
			return
		}
		srv.run(s)
	}
}

// run drains up to workBatch events of s.
func (srv *Server) run(s *Session) {
	for range workBatch {
		s.mu.Lock()
		if s.mbox.len() == 0 {
			s.mu.Unlock()
			break
		}
		ev := s.mbox.pop()
		if ev.kind == evUp {
			s.ups--
		}
		s.mu.Unlock()
		srv.handle(s, &ev)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushAckLocked()
	if s.mbox.len() == 0 {
		s.mbox.release()
		s.scheduled = false
		return
	}
	srv.runq.push(s)
}

func (srv *Server) handle(s *Session, ev *event) {
	if srv.trace.Any() { // the one cost of tracing when it is off
		defer srv.traceEvent(s, ev)
	}
	switch ev.kind {
	case evUp:
		srv.up(s, ev)
	case evOpen:
		srv.openEvent(s, ev)
	case evSnapshot:
		srv.snapshot(s, ev)
	case evCheckpoint:
		srv.checkpoint(s, ev)
	case evClose:
		s.mu.Lock()
		run := s.opened && !s.ended
		s.ended = true
		s.mu.Unlock()
		if run {
			srv.stats.sessionsClosed.Add(1)
			start := time.Now()
			srv.cfg.Handler.OnClose(s, ev.text)
			srv.metrics.called(iClose, start)
		}
	}
}

// up delivers one upstream message: reliable ones once and in order.
func (srv *Server) up(s *Session, ev *event) {
	s.mu.Lock()
	lastUp, ended := s.lastUp, s.ended
	if ev.reliable && ev.seq <= lastUp {
		s.needAck = true
	}
	if !ended {
		s.markDirtyLocked()
	}
	replay := ev.reliable && ev.seq <= s.replayUntil
	s.mu.Unlock()
	switch {
	case ended:
		return
	case !ev.reliable:
		start := time.Now()
		err := srv.cfg.Handler.OnMessage(s, ev.payload, false)
		srv.metrics.called(iMessage, start)
		if err != nil {
			srv.stats.handlerErrors.Add(1)
			return
		}
		srv.stats.upDelivered.Add(1)
		return
	case ev.seq <= lastUp:
		srv.stats.dropDuplicate.Add(1)
		return
	case ev.seq != lastUp+1:
		srv.stats.dropGap.Add(1)
		return
	}
	s.seq.Store(ev.seq)
	if replay {
		s.replaying.Store(true)
		srv.stats.replayed.Add(1)
	}
	start := time.Now()
	err := srv.cfg.Handler.OnMessage(s, ev.payload, true)
	srv.metrics.called(iMessage, start)
	s.seq.Store(0)
	if replay {
		s.replaying.Store(false)
	}
	if err != nil {
		srv.stats.handlerErrors.Add(1)
		return
	}
	srv.stats.upDelivered.Add(1)
	s.mu.Lock()
	if s.lastUp == ev.seq-1 {
		s.lastUp = ev.seq
	}
	s.mu.Unlock()
}

// openEvent runs OnOpen for the binding ev was queued for and answers
// Opened (then the outbox after HELLO last, the topics and what was sent
// during OnOpen) or Refused.
func (srv *Server) openEvent(s *Session, ev *event) {
	s.mu.Lock()
	if s.epoch != ev.epoch || s.state != stateOpening {
		s.mu.Unlock()
		return // superseded by a newer Open or a detach
	}
	reason := ev.reason
	switch {
	case reason == OpenMigrated:
	case s.migrated != nil:
		// A migrated Open whose OnOpen a Close overtook: the session's
		// seqs were restored with it, so it opens as migrated with that
		// state (opened as new, the device would renumber from 1 and the
		// restored lastUp would swallow its frames as duplicates).
		reason, ev.payload, ev.restored = OpenMigrated, *s.migrated, true
	case s.opened:
		reason = OpenResumed
	default:
		reason = OpenNew
	}
	ev.reason = reason // Opened tells the gateway what the shard did
	s.mu.Unlock()
	start := time.Now()
	err := srv.cfg.Handler.OnOpen(s, reason, ev.payload)
	srv.metrics.called(iOpen, start)
	if err != nil {
		srv.metrics.openErrors.Add(1)
		srv.refuseOpened(s, ev.epoch, err)
		return
	}
	resend, l := srv.opened(s, ev)
	for _, f := range resend {
		err := l.sendWait(&protocol.Envelope{Kind: protocol.LinkDown, Session: s.id, Epoch: ev.epoch,
			Seq: f.Seq, Flags: protocol.FlagAckRequested, Payload: f.Payload})
		if err != nil {
			return // the link closed: the frames wait in the outbox
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epoch != ev.epoch || s.state != stateOpening || s.link != l {
		return
	}
	s.state = stateAttached
	for t := range s.topics {
		s.sendExtLocked(protocol.LinkSubscribe, &linkExt{LinkExt: protocol.LinkExt{Topic: t}})
	}
	for _, f := range s.early {
		fl, class := protocol.Flags(0), droppable
		if f.Seq != 0 {
			fl, class = protocol.FlagAckRequested, essential
		}
		s.sendLocked(protocol.LinkDown, f.Seq, fl, f.Payload, nil, class)
	}
	s.early, s.earlyBytes = nil, 0
	s.flushAckLocked()
	// The gateway's first checkpoint of this binding: the state it would
	// reopen the session from if this shard crashed.
	s.queueCheckpointLocked()
}

// opened sends Opened for the binding of ev and returns the outbox frames
// to redeliver (after the device's HELLO last, up to the bind) and the
// link. The session stays opening while they go out, paced by the link
// (sendWait), so that new Sends queue behind them in order.
func (srv *Server) opened(s *Session, ev *event) ([]outFrame, *link) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opened, s.migrated = true, nil
	if s.epoch != ev.epoch || s.state != stateOpening {
		return nil, nil
	}
	srv.stats.sessionsOpened.Add(1)
	s.sendExtLocked(protocol.LinkOpened, &linkExt{LinkExt: protocol.LinkExt{Reason: ev.reason.String(),
		LastUp: s.lastUp, DownSeq: s.downSeq, Ckpt: srv.cfg.CheckpointInterval > 0}})
	s.ackedUp, s.needAck = s.lastUp, false
	if ev.reason != OpenMigrated || ev.restored {
		s.ackDownLocked(ev.helloLast) // the device has them
	}
	var resend []outFrame
	for _, f := range s.outbox {
		if f.Seq > ev.downAtOpen {
			break
		}
		if f.Seq > ev.helloLast {
			resend = append(resend, f)
		}
	}
	return resend, s.link
}

// refuseOpened answers Refused for the binding of epoch after OnOpen failed.
// A session never opened is forgotten (without OnClose); an opened one
// waits for a resume as if its device had gone.
func (srv *Server) refuseOpened(s *Session, epoch uint64, err error) {
	code, text := refusal(err)
	s.mu.Lock()
	current := s.epoch == epoch && s.state == stateOpening
	if current {
		srv.stats.sessionsRefused.Add(1)
		s.sendExtLocked(protocol.LinkRefused, &linkExt{LinkExt: protocol.LinkExt{Code: code, Reason: text}})
		s.detachLocked("refused: " + text)
	}
	forget := current && !s.opened
	s.mu.Unlock()
	if !forget {
		return
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	s.mu.Lock()
	still := srv.byID[s.id] == s && s.epoch == epoch && s.state == stateDetached && !s.opened
	s.mu.Unlock()
	if still {
		srv.removeLocked(s, "refused", false)
	}
}

// snapshot answers Snapshot with State: the handler's snapshot, the
// sequence state, the outbox and the topics. It runs after every Up that
// arrived before the Snapshot; from then on the session is fenced (no
// Up, no Send) until an Open binds it again.
func (srv *Server) snapshot(s *Session, ev *event) {
	if !s.snapshotCurrent(ev.epoch) {
		return
	}
	state, err := srv.handlerState(s)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.snapshotCurrentLocked(ev.epoch) {
		return
	}
	s.flushAckLocked()
	s.state, s.idleSince = stateFenced, time.Now()
	srv.idle.add(s)
	x := s.stateLocked(state)
	x.Outbox = s.outbox
	if err != nil {
		x = linkExt{LinkExt: protocol.LinkExt{Code: protocol.CodeInternal, Reason: "snapshot: " + err.Error()}}
	}
	p := encodeExt(&x)
	if len(p) > maxPayload {
		p = encodeExt(&linkExt{LinkExt: protocol.LinkExt{Code: protocol.CodeTooLarge, Reason: "state too large"}})
	}
	srv.stats.snapshots.Add(1)
	s.sendLocked(protocol.LinkState, 0, 0, nil, p, essential)
}

// handlerState is the handler's snapshot of s (nil when it keeps no
// state). Worker of s.
func (srv *Server) handlerState(s *Session) ([]byte, error) {
	if sn, ok := srv.cfg.Handler.(Snapshotter); ok {
		return sn.Snapshot(s)
	}
	return nil, nil
}

// stateLocked is what moves with s, or survives its shard, besides the
// outbox: the handler's state, the sequences, the tags and the topics.
func (s *Session) stateLocked(state []byte) linkExt {
	x := linkExt{LinkExt: protocol.LinkExt{State: state, LastUp: s.lastUp, DownSeq: s.downSeq, Tags: s.tags}}
	for t := range s.topics {
		x.Topics = append(x.Topics, t)
	}
	return x
}

func (s *Session) snapshotCurrent(epoch uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshotCurrentLocked(epoch)
}

// snapshotCurrentLocked: the Snapshot still concerns the live binding.
func (s *Session) snapshotCurrentLocked(epoch uint64) bool {
	return s.epoch == epoch && s.upFenced && (s.state == stateAttached || s.state == stateFenced)
}
