package server

import "github.com/switchyard-gw/switchyard/protocol"

// backend is where sessions go once their HELLO passed. The embedded echo
// backend is the one a gateway runs when no backend is configured; the
// remote backend (remote.go) sends sessions to backend shards over links.
//
// The handler calls open, data and ack with the connection's pmu held, in
// frame order; closed runs from the close callback.
type backend interface {
	// open binds s after a good HELLO; resumed says the gateway found or
	// verified an earlier session. It answers with c.openDone (or
	// c.opened from another goroutine) or with c.fail.
	open(c *conn, s *session, h *protocol.Hello, resumed bool)
	// data handles upstream DATA (reliable ones have seq ≥ 1).
	data(c *conn, s *session, f protocol.Frame)
	// ack handles the device's cumulative ACK of downstream DATA.
	ack(c *conn, s *session, seq uint32)
	// closed tells that c, which held s, has ended.
	closed(c *conn, s *session)
}

// echoBackend answers every upstream DATA with a downstream DATA carrying
// the same payload, reliable when the upstream frame was. Its session state
// (seqs, outbox) lives in the gateway's session table. Reliable upstream is
// accepted once and in order: duplicates are re-ACKed, gaps dropped.
// Reliable echoes are numbered per session and kept in the outbox until the
// device ACKs them, so a resumed device gets back what it missed.
type echoBackend struct{ maxOutbox int }

var _ backend = echoBackend{}

func (echoBackend) open(c *conn, s *session, h *protocol.Hello, resumed bool) {
	s.mu.Lock()
	if resumed {
		s.outbox.ack(h.Last)
	}
	last := s.upLast
	s.mu.Unlock()
	c.openDone(resumed, last)
	s.mu.Lock()
	s.outbox.each(func(seq uint32, payload []byte) {
		c.queue(protocol.TypeData, protocol.FlagAckRequested, seq, payload)
	})
	s.mu.Unlock()
}

func (e echoBackend) data(c *conn, s *session, f protocol.Frame) {
	if !f.Reliable() {
		c.queue(protocol.TypeData, 0, 0, f.Payload)
		return
	}
	s.mu.Lock()
	switch {
	case s.conn != c:
		s.mu.Unlock()
		c.g.metrics.drop(dropStale)
		return
	case f.Seq <= s.upLast:
		// A resend of something already accepted: ACK again, deliver never.
		last := s.upLast
		s.mu.Unlock()
		c.g.metrics.drop(dropDuplicate)
		c.ackPending = max(c.ackPending, last)
		c.ackSent = min(c.ackSent, last-1)
		return
	case f.Seq != s.upLast+1:
		// A gap: an earlier frame was dropped (rate limit). Not ACKed; the
		// device resends it (after a 429, or from WELCOME last+1).
		s.mu.Unlock()
		c.g.metrics.drop(dropGap)
		return
	case s.outbox.size()+len(f.Payload)+outboxEntryHeader > e.maxOutbox:
		s.mu.Unlock()
		c.shut(reasonSlowConsumer)
		return
	}
	s.upLast = f.Seq
	s.downSeq++
	s.outbox.push(s.downSeq, f.Payload)
	c.queue(protocol.TypeData, protocol.FlagAckRequested, s.downSeq, f.Payload)
	s.mu.Unlock()
	c.ackPending = f.Seq
}

func (echoBackend) ack(c *conn, s *session, seq uint32) {
	s.mu.Lock()
	if s.conn == c {
		s.outbox.ack(seq)
	}
	s.mu.Unlock()
}

func (echoBackend) closed(*conn, *session) {}
