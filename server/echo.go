package server

import "github.com/switchyard-gw/switchyard/protocol"

// backend is where sessions' upstream DATA goes. The embedded echo backend is
// the one a gateway runs when no backend is configured.
type backend interface {
	// data handles best-effort upstream DATA.
	data(c *conn, s *session, f protocol.Frame)
	// dataReliable handles reliable DATA whose seq is s.upLast+1, with s.mu
	// held. It returns false when it could not accept the frame, which is
	// then not ACKed and the connection is closed as a slow consumer.
	dataReliable(c *conn, s *session, f protocol.Frame) bool
}

// echoBackend answers every upstream DATA with a downstream DATA carrying
// the same payload, reliable when the upstream frame was. Reliable echoes
// are numbered per session and kept in the outbox until the device ACKs
// them, so a resumed device gets back what it missed.
type echoBackend struct{ maxOutbox int }

var _ backend = echoBackend{}

func (echoBackend) data(c *conn, _ *session, f protocol.Frame) {
	c.queue(protocol.TypeData, 0, 0, f.Payload)
}

func (e echoBackend) dataReliable(c *conn, s *session, f protocol.Frame) bool {
	if s.outbox.size()+len(f.Payload)+outboxEntryHeader > e.maxOutbox {
		return false
	}
	s.upLast = f.Seq
	s.downSeq++
	s.outbox.push(s.downSeq, f.Payload)
	c.queue(protocol.TypeData, protocol.FlagAckRequested, s.downSeq, f.Payload)
	return true
}
