package server

import (
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// handshake answers a HELLO: validation in the contract's order (structure
// 400, size 413, then token 401), session attach (takeover 409 to the
// previous connection), WELCOME, and redelivery of what a resumed device
// missed.
func (c *conn) handshake(f *protocol.Frame) {
	g := c.g
	h, err := protocol.DecodeHello(f.Payload)
	if err != nil {
		c.failErr(err)
		return
	}
	now := time.Now()
	if len(g.cfg.AuthSecrets) > 0 {
		if err := protocol.VerifyToken(g.cfg.AuthSecrets, h.ID, h.Token, now); err != nil {
			c.fail(protocol.CodeUnauthorized, "authentication failed")
			return
		}
	}
	if g.draining.Load() {
		c.fail(protocol.CodeUnavailable, "gateway draining")
		return
	}
	var resumeID *[16]byte
	if len(h.Resume) > 0 {
		if sid, ok := verifyResumeToken(g.key, h.Resume, h.ID, now); ok {
			resumeID = &sid
		} else {
			g.metrics.resumeRejected.Inc()
		}
	}
	s, resumed, prev := g.sessions.attach(c, h.ID, resumeID)
	if prev != nil && prev != c {
		g.metrics.takeovers.Inc()
		prev.fail(protocol.CodeConflict, "session taken over")
	}
	if resumeID != nil && !resumed {
		g.metrics.resumeRejected.Inc()
	}
	c.sess = s
	c.rl.reset(g)
	c.ready.Store(true)
	c.welcome(s, &h, resumed, now)
	g.wheel.Schedule(&c.dl, g.idle)
	g.metrics.handshakes.Inc()
	if resumed {
		g.metrics.resumed.Inc()
	}
	g.metrics.handshakeDuration.Update(float64(now.UnixNano()-c.acceptNs) / 1e9)
}

// welcome queues WELCOME and, for a resumed session, the reliable
// downstream frames after HELLO last.
func (c *conn) welcome(s *session, h *protocol.Hello, resumed bool, now time.Time) {
	g := c.g
	s.mu.Lock()
	defer s.mu.Unlock()
	if resumed {
		s.outbox.ack(h.Last)
	}
	w := protocol.Welcome{
		Session:  s.idString(),
		Resume:   makeResumeToken(g.key, s.id, s.device, now.Add(g.cfg.ResumeTokenTTL)),
		HB:       int(g.cfg.Heartbeat / time.Second),
		MaxFrame: g.cfg.MaxFrame,
		Node:     g.cfg.Node,
		Resumed:  resumed,
		Last:     s.upLast,
	}
	p, err := protocol.Marshal(&w)
	if err != nil {
		c.fail(protocol.CodeInternal, "internal error")
		return
	}
	c.queue(protocol.TypeWelcome, 0, 0, p)
	s.outbox.each(func(seq uint32, payload []byte) {
		c.queue(protocol.TypeData, protocol.FlagAckRequested, seq, payload)
	})
}
