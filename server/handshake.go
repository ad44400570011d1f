package server

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"

	"github.com/switchyard-gw/switchyard/internal/rawio"
	"github.com/switchyard-gw/switchyard/protocol"
	"github.com/switchyard-gw/switchyard/server/remote"
)

// handshake answers a HELLO: validation in the contract's order (structure
// 400, size 413, then token 401), session attach (takeover 409 to the
// previous connection on this gateway), then the backend binds the session
// and answers through openDone (at once for the embedded echo; for backend
// shards when the shard answers, through Opened).
func (c *conn) handshake(f *protocol.Frame) {
	g := c.g
	h, err := protocol.DecodeHello(f.Payload)
	if err != nil {
		c.failErr(err)
		return
	}
	now := time.Now()
	lv := g.live.Load()
	if g.trace.Any() {
		g.traceEvent(h.ID, "HELLO", "remote", c.remote(), "resume", len(h.Resume) > 0, "last", h.Last,
			"accepted_ago", time.Duration(now.UnixNano()-c.acceptNs))
	}
	if c.tls != nil && !c.tls.certDevice(g.tls, h.ID) {
		g.tls.certRejects.Inc()
		c.refusedHello(protocol.CodeUnauthorized, h.ID, "device id does not match the client certificate")
		return
	}
	if lv.auth != nil {
		if err := lv.auth.Verify(h.ID, h.Token, now); err != nil {
			c.refusedHello(protocol.CodeUnauthorized, h.ID, "authentication failed")
			return
		}
	}
	if g.draining.Load() {
		c.refusedHello(protocol.CodeUnavailable, h.ID, "gateway draining")
		return
	}
	if now.UnixNano()-c.acceptNs >= int64(freshAccept) && c.peerClosed() {
		// Nobody would read the WELCOME, and attaching would take the
		// device's session from the connection it has now.
		g.metrics.handshakesAbandoned.Inc()
		g.metrics.handshakeResult(handshakeAbandoned)
		c.shut(reasonPeer)
		return
	}
	var resumeID *[16]byte
	if len(h.Resume) > 0 {
		c.resumeTried = true
		if sid, ok := verifyResumeToken(lv.resumeKeys, h.Resume, h.ID, now); ok {
			resumeID = &sid
		}
	}
	if g.remote != nil && c.bind == nil {
		c.bind = new(remote.Binding)
	}
	s, resumed, prev := g.sessions.attach(c, h.ID, resumeID, g.remote != nil)
	if prev != nil && prev != c {
		if g.trace.Any() {
			g.traceEvent(h.ID, "takeover: the new connection takes the session", "remote", c.remote())
		}
		g.metrics.takeovers.Inc()
		prev.refused(protocol.CodeConflict, h.ID, "session taken over")
	}
	c.sess = s
	c.rl.reset(g)
	c.opening.Store(true)
	c.enter(stOpening)
	g.backend.Open(c, &h, resumed)
}

// openDone completes the handshake once the backend has bound the session:
// WELCOME, then the connection is ready. The caller holds pmu (the handler,
// or Opened).
func (c *conn) openDone(resumed bool, last uint32) {
	g := c.g
	if !resumed && c.resumeTried {
		g.metrics.resumeRejected.Inc()
	}
	c.resumeTried = false
	now := time.Now()
	c.welcome(resumed, last, now)
	c.opening.Store(false)
	c.ready.Store(true)
	c.enter(stReady)
	g.wheel.ScheduleAt(&c.dl, g.idleAt(g.wheel.Now()))
	g.metrics.handshakes.Inc()
	if resumed {
		g.metrics.resumed.Inc()
		g.metrics.handshakeResult(handshakeResumed)
	} else {
		g.metrics.handshakeResult(handshakeOK)
	}
	g.metrics.handshakeDuration.Update(float64(now.UnixNano()-c.acceptNs) / 1e9)
	if g.trace.Any() {
		w := c.bind.Where()
		g.traceEvent(c.sess.device, "WELCOME", "resumed", resumed, "last", last, "session", c.sess.idString(),
			"shard", w.Shard, "rule", w.Rule, "epoch", w.Epoch)
	}
}

// refusedHello refuses a HELLO before any session was attached: the
// device is known, so the refusal goes into the ring of disconnects with
// the reason the close will count.
func (c *conn) refusedHello(code int, device, msg string) {
	if c.g.trace.Any() {
		c.g.traceEvent(device, "ERROR", "code", code, "message", msg, "remote", c.remote())
	}
	c.refused(code, device, msg)
	c.noteDisconnect(device, reasonFor(code, false))
}

// welcome queues WELCOME.
func (c *conn) welcome(resumed bool, last uint32, now time.Time) {
	g := c.g
	s := c.sess
	lv := g.live.Load()
	w := protocol.Welcome{
		Session:  s.idString(),
		Resume:   makeResumeToken(lv.resumeKeys[0], s.id, s.device, now.Add(lv.resumeTokenTTL)),
		HB:       int(g.cfg.Heartbeat / time.Second),
		MaxFrame: g.cfg.MaxFrame,
		Node:     g.cfg.Node,
		Resumed:  resumed,
		Last:     last,
	}
	var b [256]byte // a WELCOME's usual size; a longer one grows onto the heap
	c.queue(protocol.TypeWelcome, 0, 0, protocol.AppendWelcome(b[:0], &w))
}

// freshAccept is how long the look at a connection's socket at accept
// (arrived) stands for the HELLO's (peerClosed).
const freshAccept = 10 * time.Millisecond

// peerClosed reports whether the device has already closed its end of the
// connection (FIN or reset, nothing left to read). netpoll hands over the
// bytes that came with a FIN before it reports the close, so a HELLO can
// be handled after its device gave up on this connection: on a saturated
// gateway the HELLO waited past the device's handshake deadline, and the
// device has reconnected since. Attached, such a HELLO would take the
// session over from the device's new connection (409) and, on a shard,
// replace the session that connection resumed, so that its next resume
// finds nothing and starts afresh (found by tools/scale at 10,000
// sessions, the ramp of a saturated box). One peek per HELLO, never on
// the frame path. A device that half-closes after its HELLO counts as
// gone too: it could not send the heartbeats that keep it anyway.
//
// A HELLO handled within freshAccept of its accept is not looked at
// again: at accept the gateway read the socket's state (arrived:
// TCP_INFO), and a connection its device had closed went no further. A
// HELLO that came with its connection (TCP_DEFER_ACCEPT) is handled
// microseconds later, so the peek would be a second system call per
// handshake for what the first just said; the device giving up within
// those milliseconds, at its deadline, is the same race the peek leaves
// between itself and the attach.
func (c *conn) peerClosed() bool {
	if c.fd <= 0 {
		return false
	}
	var b [1]byte
	for {
		n, err := rawio.Peek(c.fd, b[:])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err == nil:
			return n == 0
		default:
			return errors.Is(err, unix.ECONNRESET)
		}
	}
}
