package backend

import (
	"sync"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// The session table: every session of this shard by id and by device,
// under Server.mu. Lock order: Server.mu → Session.mu → (idleSet.mu,
// link.mu, runQueue.mu). The reader goroutines take Server.mu for
// reading on the data path and for writing only for Open and Close.

// dispatch handles one envelope read from l. It never blocks on a
// handler: handler work goes to the session's mailbox.
func (srv *Server) dispatch(l *link, e *protocol.Envelope) {
	switch e.Kind {
	case protocol.LinkOpen:
		srv.open(l, e)
	case protocol.LinkUp, protocol.LinkDownAck, protocol.LinkClose, protocol.LinkSnapshot:
		srv.sessionEnvelope(l, e)
	case protocol.LinkPing:
		l.send(&protocol.Envelope{Kind: protocol.LinkPong}, droppable)
	case protocol.LinkPong:
	default:
		srv.stats.dropMalformed.Add(1)
	}
}

// open binds a session to l (docs/links.md "Sessions on a link",
// "Fencing", "Takeover across gateways"). OnOpen and the Opened answer
// follow from the session's mailbox.
func (srv *Server) open(l *link, e *protocol.Envelope) {
	x, err := decodeExt(e.Ext)
	if err != nil || x.Device == "" {
		srv.stats.dropMalformed.Add(1)
		srv.refuse(l, e, protocol.CodeBadRequest, "bad open")
		return
	}
	reason := parseOpenReason(x.Reason)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	cur := srv.byID[e.Session]
	switch {
	case srv.closed:
		srv.refuse(l, e, protocol.CodeUnavailable, "shard closing")
		return
	case cur != nil && cur.device != x.Device:
		srv.refuse(l, e, protocol.CodeBadRequest, "session id belongs to another device")
		return
	case srv.draining && cur == nil:
		srv.refuse(l, e, protocol.CodeUnavailable, "shard draining")
		return
	}
	if code, why := srv.fenceOpenLocked(cur, x.Device, reason); code != 0 {
		srv.refuse(l, e, code, why) // fence.go
		return
	}
	if cur != nil && !srv.acceptEpoch(cur, e.Epoch) {
		srv.stats.dropStale.Add(1)
		code := protocol.CodeConflict
		if reason == OpenMigrated {
			// A move older than a binding this shard has seen: not a
			// takeover, so the gateway fails the device with 503 and it
			// resumes (a 409 would end it for good).
			code = protocol.CodeUnavailable
		}
		srv.refuse(l, e, code, "stale epoch")
		return
	}
	if old := srv.byDevice[x.Device]; old != nil && old != cur {
		srv.removeLocked(old, "taken over", true)
	}
	s := cur
	if s == nil {
		s = &Session{srv: srv, id: e.Session, device: x.Device}
		srv.byID[s.id] = s
		srv.byDevice[s.device] = s
		srv.stats.sessions.Add(1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bindLocked(l, e.Epoch, reason, &x)
}

// acceptEpoch reports whether an Open with epoch may bind s: at least the
// stored epoch + 1, or 0 (the shard picks).
func (srv *Server) acceptEpoch(s *Session, epoch uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return epoch == 0 || epoch > s.epoch
}

// bindLocked makes l (with epoch) the session's binding and queues the
// open event. An older binding on another link, or one of another
// connection, is kicked with 409.
func (s *Session) bindLocked(l *link, epoch uint64, reason OpenReason, x *linkExt) {
	if epoch == 0 {
		epoch = s.epoch + 1
	}
	if s.link != nil && s.link != l && (s.state == stateOpening || s.state == stateAttached) {
		s.sendExtLocked(protocol.LinkKick, &linkExt{LinkExt: protocol.LinkExt{Code: protocol.CodeConflict, Reason: "taken over"}})
		s.srv.stats.takeovers.Add(1)
	}
	if s.state == stateDetached || s.state == stateFenced {
		s.srv.idle.remove(s)
	}
	s.link, s.epoch, s.state, s.node, s.upFenced = l, epoch, stateOpening, x.Node, false
	if s.node == "" {
		s.node = l.node
	}
	s.early, s.earlyBytes = nil, 0
	if x.Tags != nil || s.tags == nil {
		s.tags = x.Tags
	}
	s.replayUntil = 0
	if reason == OpenMigrated {
		s.replayUntil = x.Replay
		s.restoreLocked(x)
		state := x.State
		s.migrated = &state
	}
	s.downSeq = max(s.downSeq, x.DownSeq) // the device must see new seqs as new
	s.enqueueLocked(event{kind: evOpen, epoch: epoch, reason: reason, payload: x.State,
		helloLast: x.DownSeq, downAtOpen: s.downSeq})
}

// restoreLocked takes the sequence state a migrated Open carries.
func (s *Session) restoreLocked(x *linkExt) {
	s.lastUp, s.ackedUp, s.needAck = x.LastUp, 0, false
	s.outbox, s.outboxBytes = x.Outbox, 0
	for _, f := range s.outbox {
		s.outboxBytes += len(f.Payload)
	}
	if n := len(s.outbox); n > 0 {
		s.downSeq = max(s.downSeq, s.outbox[n-1].Seq)
	}
	if len(x.Topics) > 0 {
		s.topics = make(map[string]struct{}, len(x.Topics))
		for _, t := range x.Topics {
			s.topics[t] = struct{}{}
		}
	}
}

// refuse answers an Open with Refused.
func (srv *Server) refuse(l *link, e *protocol.Envelope, code int, reason string) {
	srv.stats.sessionsRefused.Add(1)
	l.send(&protocol.Envelope{Kind: protocol.LinkRefused, Session: e.Session, Epoch: e.Epoch,
		Ext: encodeExt(&linkExt{LinkExt: protocol.LinkExt{Code: code, Reason: reason}})}, essential)
}

// removeLocked takes s out of the table and queues its OnClose. kick
// tells a gateway still holding it (409, for a takeover by a new session).
func (srv *Server) removeLocked(s *Session, reason string, kick bool) {
	delete(srv.byID, s.id)
	if srv.byDevice[s.device] == s {
		delete(srv.byDevice, s.device)
	}
	srv.stats.sessions.Add(-1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if kick && (s.state == stateOpening || s.state == stateAttached) {
		s.sendExtLocked(protocol.LinkKick, &linkExt{LinkExt: protocol.LinkExt{Code: protocol.CodeConflict, Reason: reason}})
		srv.stats.takeovers.Add(1)
	}
	if s.state == stateDetached || s.state == stateFenced {
		srv.idle.remove(s)
	}
	s.state, s.link = stateClosed, nil
	s.early, s.earlyBytes = nil, 0
	s.enqueueLocked(event{kind: evClose, text: reason})
}

// sessionEnvelope handles Up, DownAck, Close and Snapshot: fencing by
// link and epoch first.
func (srv *Server) sessionEnvelope(l *link, e *protocol.Envelope) {
	if e.Kind == protocol.LinkClose {
		srv.closeFromGateway(l, e)
		return
	}
	srv.mu.RLock()
	s := srv.byID[e.Session]
	srv.mu.RUnlock()
	if s == nil {
		srv.stats.dropUnknown.Add(1)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !srv.current(s, l, e) {
		return
	}
	switch e.Kind {
	case protocol.LinkUp:
		if s.state == stateFenced || s.upFenced {
			srv.stats.dropFenced.Add(1)
			return
		}
		if s.ups >= srv.cfg.MaxMailbox {
			srv.stats.dropMailbox.Add(1)
			return
		}
		s.enqueueLocked(event{kind: evUp, seq: e.Seq, reliable: e.Flags&protocol.FlagAckRequested != 0,
			payload: append([]byte(nil), e.Payload...)})
	case protocol.LinkDownAck:
		s.ackDownLocked(e.Seq)
	case protocol.LinkSnapshot:
		s.upFenced = true // Ups from now on are the new owner's
		s.enqueueLocked(event{kind: evSnapshot, epoch: s.epoch})
	}
}

// current reports whether e belongs to s's current binding, counting the
// drop when not. s.mu is held.
func (srv *Server) current(s *Session, l *link, e *protocol.Envelope) bool {
	switch {
	case s.state == stateClosed:
		srv.stats.dropUnknown.Add(1)
	case s.link != l || s.epoch != e.Epoch:
		srv.stats.dropStale.Add(1)
	default:
		return true
	}
	return false
}

// closeFromGateway handles Close: the device's connection ended. The
// session waits ResumeWindow; a fenced (moved) one ends now.
func (srv *Server) closeFromGateway(l *link, e *protocol.Envelope) {
	x, _ := decodeExt(e.Ext)
	reason := x.Reason
	if reason == "" {
		reason = "closed"
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	s := srv.byID[e.Session]
	if s == nil {
		srv.stats.dropUnknown.Add(1)
		return
	}
	s.mu.Lock()
	ok := srv.current(s, l, e)
	fenced := s.state == stateFenced
	if ok && !fenced {
		s.detachLocked(reason)
	}
	s.mu.Unlock()
	if ok && fenced {
		srv.removeLocked(s, reason, false)
		srv.moved.add(s.device, time.Now()) // stale Opens stay refused (fence.go)
	}
}

// linkLost detaches every session bound through l.
func (srv *Server) linkLost(l *link) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if _, ok := srv.links[l]; !ok {
		return
	}
	delete(srv.links, l)
	srv.stats.links.Add(-1)
	for _, s := range srv.byID {
		s.mu.Lock()
		if s.link == l {
			s.detachLocked("link lost")
		}
		s.mu.Unlock()
	}
}

// idleSet holds the sessions waiting out the resume window (detached or
// fenced), for the janitor.
type idleSet struct {
	mu sync.Mutex
	m  map[*Session]struct{}
}

func (t *idleSet) add(s *Session) {
	t.mu.Lock()
	t.m[s] = struct{}{}
	t.mu.Unlock()
}

func (t *idleSet) remove(s *Session) {
	t.mu.Lock()
	delete(t.m, s)
	t.mu.Unlock()
}

func (t *idleSet) list() []*Session {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*Session, 0, len(t.m))
	for s := range t.m {
		out = append(out, s)
	}
	return out
}

// janitorTick returns how often expired sessions are looked for.
func janitorTick(window time.Duration) time.Duration {
	return min(max(window/8, 5*time.Millisecond), time.Second)
}

// janitor forgets the sessions whose resume window ran out.
func (srv *Server) janitor() {
	t := time.NewTicker(janitorTick(srv.cfg.ResumeWindow))
	defer t.Stop()
	for {
		select {
		case <-srv.quit:
			return
		case now := <-t.C:
			srv.expire(now)
		}
	}
}

func (srv *Server) expire(now time.Time) {
	for _, s := range srv.idle.list() {
		srv.mu.Lock()
		s.mu.Lock()
		due := (s.state == stateDetached || s.state == stateFenced) && now.Sub(s.idleSince) >= srv.cfg.ResumeWindow
		fenced := s.state == stateFenced
		reason := s.closeReason
		s.mu.Unlock()
		if due && srv.byID[s.id] == s {
			if reason == "" {
				reason = "resume window expired"
			}
			srv.stats.sessionsExpired.Add(1)
			srv.removeLocked(s, reason, false)
			if fenced {
				srv.moved.add(s.device, now) // its state went to a move
			}
		}
		srv.mu.Unlock()
	}
	srv.mu.Lock()
	srv.moved.expire(now, srv.cfg.ResumeWindow)
	srv.mu.Unlock()
}
