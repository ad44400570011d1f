package server

import (
	"github.com/switchyard-gw/switchyard/protocol"
	"github.com/switchyard-gw/switchyard/server/remote"
)

// backend is where sessions go once their HELLO passed, and the only way
// the device side reaches the shard side. The embedded echo backend is the
// one a gateway runs when no backend is configured; *remote.Backend sends
// sessions to backend shards over links. New picks one; the device is
// always a *conn with its session attached.
//
// The handler calls Open, Data and Ack with the connection's pmu held, in
// frame order; Closed runs once, from the close callback or whoever holds
// pmu when the close is handled (releaseIfIdle).
type backend interface {
	// Open binds d's session after a good HELLO h; resumed says the
	// gateway found or verified an earlier session. It answers with
	// openDone (or Opened from another goroutine) or with fail.
	Open(d remote.Device, h *protocol.Hello, resumed bool)
	// Data handles upstream DATA (reliable ones have seq ≥ 1).
	Data(d remote.Device, f protocol.Frame)
	// Ack handles the device's cumulative ACK of downstream DATA.
	Ack(d remote.Device, seq uint32)
	// Closed tells that d's connection has ended.
	Closed(d remote.Device)
}

var (
	_ backend = echoBackend{}
	_ backend = (*remote.Backend)(nil)
)

// echoBackend answers every upstream DATA with a downstream DATA carrying
// the same payload, reliable when the upstream frame was. Its session state
// (seqs, outbox) lives in the gateway's session table. Reliable upstream is
// accepted once and in order: duplicates are re-ACKed, gaps dropped.
// Reliable echoes are numbered per session and kept in the outbox until the
// device ACKs them, so a resumed device gets back what it missed.
type echoBackend struct{ maxOutbox int }

// Open answers at once: the session is in the gateway's table.
func (echoBackend) Open(d remote.Device, h *protocol.Hello, resumed bool) {
	c := d.(*conn)
	s := c.sess
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

// Data echoes f.
func (e echoBackend) Data(d remote.Device, f protocol.Frame) {
	c := d.(*conn)
	s := c.sess
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
		c.slowConsumer()
		return
	}
	s.upLast = f.Seq
	s.downSeq++
	s.outbox.push(s.downSeq, f.Payload)
	c.queue(protocol.TypeData, protocol.FlagAckRequested, s.downSeq, f.Payload)
	s.mu.Unlock()
	c.ackPending = f.Seq
}

// Ack forgets the echoes the device acknowledged.
func (echoBackend) Ack(d remote.Device, seq uint32) {
	c := d.(*conn)
	s := c.sess
	s.mu.Lock()
	if s.conn == c {
		s.outbox.ack(seq)
	}
	s.mu.Unlock()
}

// Closed has nothing to do: the session table starts the resume window.
func (echoBackend) Closed(remote.Device) {}
