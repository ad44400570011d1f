package backend

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// sessionState is where a session stands with its gateway binding.
//
//	          Open                 OnOpen ok
//	(none) ─────────▶ opening ────────────────▶ attached
//	                    ▲  │ OnOpen error          │ Close / link lost
//	               Open │  ▼                       ▼
//	                  detached ◀───────────────────┘   (resume window)
//	attached ── Snapshot ──▶ fenced ── Close / window ──▶ closed (OnClose)
//	any ── takeover by a new session / window over / server close ──▶ closed
type sessionState uint8

const (
	stateOpening  sessionState = iota // bound to a link, OnOpen pending; sends wait
	stateAttached                     // bound, Opened sent
	stateDetached                     // no gateway; waits ResumeWindow for an Open
	stateFenced                       // state handed over (Snapshot); takes no Up until an Open
	stateClosed                       // out of the table; OnClose runs or ran
)

// Session is one device session on this shard. Its methods are safe for
// concurrent use; Send, Subscribe and Kick may be called from any
// goroutine, inside or outside handler calls.
type Session struct {
	srv    *Server
	id     protocol.SessionID
	device string
	seq    atomic.Uint32 // seq of the reliable Up in OnMessage

	mu     sync.Mutex
	tags   map[string]string
	node   string // gateway of the current (or last) binding
	link   *link  // nil unless opening, attached or fenced
	epoch  uint64 // of the current binding
	state  sessionState
	opened bool // OnOpen succeeded once
	// migrated holds the handler state of a migrated Open whose OnOpen has
	// not run yet (a Close overtook it in the mailbox); the session's
	// sequence state was restored already, so the next binding must hand
	// this state to OnOpen as a migration, never open the session as new.
	migrated   *[]byte
	upFenced   bool // Snapshot asked: Ups are dropped from now on
	ckptDirty  bool // changed since the last checkpoint: in srv.ckpt's list
	ckptQueued bool // a checkpoint event waits in the mailbox
	// replayUntil: the session was reopened from a checkpoint after its
	// shard crashed, which had accepted every reliable Up through this seq
	// (checkpoint.go); replaying is true while the handler runs one of them.
	replayUntil uint32
	replaying   atomic.Bool
	ended       bool // OnClose ran
	idleSince   time.Time
	closeReason string
	lastUp      uint32 // highest reliable upstream seq accepted by the handler
	ackedUp     uint32 // highest seq sent in UpAck (or Opened) on this binding
	needAck     bool   // a duplicate asks for a re-ack
	downSeq     uint32 // highest reliable downstream seq assigned
	outbox      []outFrame
	outboxBytes int
	early       []outFrame // sent while opening; Seq 0 = best effort
	earlyBytes  int
	topics      map[string]struct{}
	values      map[string]any
	mbox        mailbox // handler events, drained by one worker at a time
	ups         int     // Up events in mbox
	scheduled   bool    // in the run queue or being run
}

// maxPayload is the largest payload that fits one link frame.
const maxPayload = protocol.MaxLinkFrame - frameSlack

// ID returns the session id.
func (s *Session) ID() protocol.SessionID { return s.id }

// Device returns the device id.
func (s *Session) Device() string { return s.device }

// Shard returns the name of the shard serving the session.
func (s *Session) Shard() string { return s.srv.cfg.Shard }

// Server returns the server the session lives on (for Publish and Push).
func (s *Session) Server() *Server { return s.srv }

// Tags returns the device's tags from its latest HELLO. The map must not
// be modified.
func (s *Session) Tags() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tags
}

// Gateway returns the name of the gateway node of the current (or last)
// binding.
func (s *Session) Gateway() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.node
}

// Seq returns, inside OnMessage, the seq of the reliable message being
// delivered, and 0 for best effort or outside OnMessage.
func (s *Session) Seq() uint32 { return s.seq.Load() }

// LastUp returns the highest reliable upstream seq the handler accepted.
func (s *Session) LastUp() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastUp
}

// Attached reports whether a gateway holds the session now.
func (s *Session) Attached() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == stateAttached
}

// Set stores a small per-session value (nil deletes it). Values stay on
// this shard: what must move with the session belongs in the Snapshotter.
func (s *Session) Set(key string, v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v == nil {
		delete(s.values, key)
		return
	}
	if s.values == nil {
		s.values = make(map[string]any)
	}
	s.values[key] = v
}

// Get returns a value stored with Set, or nil.
func (s *Session) Get(key string) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.values[key]
}

// Send sends payload to the device. Reliable data gets the next
// downstream seq and stays in the outbox until the device ACKs it, so it
// is delivered after a resume too (ErrOutboxFull beyond MaxOutbox).
// Best-effort data goes out only while a gateway holds the session
// (ErrDetached otherwise) and may be dropped on a full link
// (ErrLinkQueueFull). payload is copied.
func (s *Session) Send(payload []byte, reliable bool) error {
	if len(payload) > maxPayload {
		return ErrTooLarge
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateClosed:
		return ErrSessionClosed
	case stateFenced:
		return ErrSessionMoved
	}
	if !reliable {
		return s.sendBestEffortLocked(payload)
	}
	if s.outboxBytes+len(payload) > s.srv.cfg.MaxOutbox {
		s.srv.stats.dropOutbox.Add(1)
		return ErrOutboxFull
	}
	s.downSeq++
	f := outFrame{Seq: s.downSeq, Payload: append([]byte(nil), payload...)}
	s.outbox = append(s.outbox, f)
	s.outboxBytes += len(f.Payload)
	switch s.state {
	case stateAttached:
		s.sendLocked(protocol.LinkDown, f.Seq, protocol.FlagAckRequested, f.Payload, nil, essential)
	case stateOpening:
		s.early = append(s.early, f)
	}
	return nil
}

func (s *Session) sendBestEffortLocked(payload []byte) error {
	switch s.state {
	case stateAttached:
		err := s.sendLocked(protocol.LinkDown, 0, 0, payload, nil, droppable)
		if err == errLinkClosed {
			s.srv.stats.dropDetached.Add(1)
			return ErrDetached
		}
		return err
	case stateOpening:
		if s.earlyBytes+len(payload) > s.srv.cfg.MaxOutbox {
			s.srv.stats.dropOutbox.Add(1)
			return ErrOutboxFull
		}
		s.early = append(s.early, outFrame{Payload: append([]byte(nil), payload...)})
		s.earlyBytes += len(payload)
		return nil
	}
	s.srv.stats.dropDetached.Add(1)
	return ErrDetached
}

// sendLocked queues one envelope of this session's binding on its link.
func (s *Session) sendLocked(k protocol.LinkKind, seq uint32, fl protocol.Flags, payload, ext []byte, class bool) error {
	if s.link == nil {
		return errLinkClosed
	}
	return s.link.send(&protocol.Envelope{
		Kind: k, Session: s.id, Epoch: s.epoch, Seq: seq, Flags: fl, Payload: payload, Ext: ext,
	}, class)
}

// sendExtLocked queues a control envelope with ext fields.
func (s *Session) sendExtLocked(k protocol.LinkKind, x *linkExt) error {
	return s.sendLocked(k, 0, 0, nil, encodeExt(x), essential)
}

// Subscribe adds the session to topic: Publish(topic) reaches the device
// through its gateway. Subscriptions follow the session to every gateway
// that binds it later and to the shard it moves to.
func (s *Session) Subscribe(topic string) error { return s.subscription(topic, true) }

// Unsubscribe removes the session from topic.
func (s *Session) Unsubscribe(topic string) error { return s.subscription(topic, false) }

// maxTopic bounds a topic name.
const maxTopic = 256

func (s *Session) subscription(topic string, on bool) error {
	if topic == "" || len(topic) > maxTopic {
		return ErrBadTopic
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateClosed:
		return ErrSessionClosed
	case stateFenced:
		return ErrSessionMoved
	}
	kind := protocol.LinkSubscribe
	if on {
		if s.topics == nil {
			s.topics = make(map[string]struct{})
		}
		s.topics[topic] = struct{}{}
	} else {
		delete(s.topics, topic)
		kind = protocol.LinkUnsub
	}
	s.markDirtyLocked()
	if s.state == stateAttached {
		s.sendExtLocked(kind, &linkExt{LinkExt: protocol.LinkExt{Topic: topic}})
	}
	return nil
}

// Kick asks the session's gateway to close the device's connection with
// ERROR code. The gateway's Close follows and the session waits for a
// resume as usual. ErrDetached when no gateway holds the session.
func (s *Session) Kick(code int, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateClosed:
		return ErrSessionClosed
	case stateOpening, stateAttached:
		return s.sendExtLocked(protocol.LinkKick, &linkExt{LinkExt: protocol.LinkExt{Code: code, Reason: reason}})
	}
	return ErrDetached
}

// ackDownLocked drops the outbox frames through seq (the device has them).
func (s *Session) ackDownLocked(seq uint32) {
	k := 0
	for k < len(s.outbox) && s.outbox[k].Seq <= seq {
		s.outboxBytes -= len(s.outbox[k].Payload)
		k++
	}
	if k == len(s.outbox) {
		s.outbox = nil
		return
	}
	s.outbox = append(s.outbox[:0], s.outbox[k:]...)
}

// detachLocked leaves the session without a gateway: it waits
// ResumeWindow from now. A fenced session stays fenced.
func (s *Session) detachLocked(reason string) {
	s.link, s.upFenced = nil, false
	s.early, s.earlyBytes = nil, 0
	s.closeReason = reason
	if s.state != stateFenced {
		s.state = stateDetached
		s.idleSince = time.Now()
	}
	s.srv.idle.add(s)
}

// enqueueLocked appends ev to the mailbox and schedules the session.
func (s *Session) enqueueLocked(ev event) {
	s.mbox.push(ev)
	if ev.kind == evUp {
		s.ups++
	}
	if !s.scheduled {
		s.scheduled = true
		s.srv.runq.push(s)
	}
}

// flushAckLocked sends one cumulative UpAck when the handler accepted
// more (or a duplicate asked for a re-ack) since the last one.
func (s *Session) flushAckLocked() {
	if s.state != stateAttached || (s.lastUp <= s.ackedUp && !s.needAck) {
		return
	}
	if s.sendLocked(protocol.LinkUpAck, s.lastUp, 0, nil, nil, essential) == nil {
		s.ackedUp, s.needAck = s.lastUp, false
	}
}
