package server

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/switchyard-gw/switchyard/protocol"
)

// onRequest is netpoll's handler: it runs when input arrived and consumes
// every complete frame before it returns.
//
//	netpoll input ──▶ onRequest ──▶ for each whole frame: ReadFrame → handle → Release
//	                     │                      (replies are queued in c.out)
//	                     └─ before it could block on a partial frame, and at
//	                        the end of the batch: flush (one write syscall)
//
// It never returns with a whole frame unread (netpoll would call it again at
// once) and never blocks on anything but the rest of a frame that has begun
// to arrive; that wait is bounded by the handshake or idle deadline.
func (g *Gateway) onRequest(ctx context.Context, nc netpoll.Connection) error {
	c, ok := ctx.(*conn)
	if !ok {
		return nc.Close()
	}
	r := nc.Reader()
	start := time.Now()
	frames, bytes := 0, 0
	for r.Len() > 0 && !c.isClosing() {
		if !wholeFrameBuffered(r) {
			c.flush() // answer what we have before waiting for the rest
		}
		f, err := protocol.ReadFrame(r, g.cfg.MaxFrame)
		if err != nil {
			var pe *protocol.Error
			if errors.As(err, &pe) {
				c.fail(pe.Code, pe.Msg)
			}
			break
		}
		frames++
		bytes += protocol.FrameSize(len(f.Payload))
		c.lastRecv.Store(g.wheel.Now())
		c.handle(&f)
		_ = r.Release()
	}
	c.flush()
	if frames > 0 {
		g.metrics.framesIn.Add(frames)
		g.metrics.bytesIn.Add(bytes)
		g.metrics.frameDuration.Update(time.Since(start).Seconds() / float64(frames))
	}
	return nil
}

// wholeFrameBuffered reports whether r holds at least one complete frame, or
// a length field that is already known to be bad (no need to wait for more).
func wholeFrameBuffered(r netpoll.Reader) bool {
	if r.Len() < protocol.LengthSize {
		return false
	}
	p, err := r.Peek(protocol.LengthSize)
	if err != nil {
		return false
	}
	n := binary.BigEndian.Uint32(p)
	return n < protocol.MinLength || uint64(r.Len()) >= uint64(n)+protocol.LengthSize
}

func (c *conn) isClosing() bool {
	c.wmu.Lock()
	closing := c.closing || c.closed
	c.wmu.Unlock()
	return closing
}

// handle dispatches one frame. f.Payload is valid only during the call.
func (c *conn) handle(f *protocol.Frame) {
	if !c.ready.Load() {
		if f.Type != protocol.TypeHello {
			c.fail(protocol.CodeBadRequest, "first frame must be HELLO")
			return
		}
		c.handshake(f)
		return
	}
	if !c.rl.allow(c.g) {
		c.rateLimited()
		return
	}
	switch f.Type {
	case protocol.TypeData:
		c.data(f)
	case protocol.TypeAck:
		c.ackDownstream(f.Seq)
	case protocol.TypePing:
		if len(f.Payload) > protocol.MaxPingPayload {
			c.fail(protocol.CodeBadRequest, "ping payload over 64 bytes")
			return
		}
		c.queue(protocol.TypePong, 0, 0, f.Payload)
	case protocol.TypePong:
		// Nothing to do: receiving it already refreshed the idle deadline.
	case protocol.TypeHello:
		c.fail(protocol.CodeBadRequest, "second HELLO")
	default:
		c.fail(protocol.CodeBadRequest, "frame type not sent by devices: "+f.Type.String())
	}
}

// queue appends a frame to the batch; flush writes it out. A batch that
// outgrows one pooled buffer is written out at once, so the outbound queue
// bound holds inside a batch too.
func (c *conn) queue(t protocol.Type, flags protocol.Flags, seq uint32, payload []byte) {
	c.wmu.Lock()
	if !c.writable() {
		c.wmu.Unlock()
		return
	}
	c.appendLocked(t, flags, seq, payload)
	var why string
	if len(*c.out) >= outBufSize {
		why = c.flushLocked()
	}
	c.wmu.Unlock()
	if why != "" {
		c.shut(why)
	}
}

// data handles upstream DATA: reliable frames are fenced by seq (accepted
// once, in order), then handed to the backend.
func (c *conn) data(f *protocol.Frame) {
	s := c.sess
	if !f.Reliable() {
		c.g.backend.data(c, s, *f)
		return
	}
	if f.Seq == 0 {
		c.fail(protocol.CodeBadRequest, "reliable DATA with seq 0")
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
		// device resends from WELCOME last+1 after it reconnects.
		s.mu.Unlock()
		c.g.metrics.drop(dropGap)
		return
	}
	ok := c.g.backend.dataReliable(c, s, *f)
	s.mu.Unlock()
	if !ok {
		c.shut(reasonSlowConsumer)
		return
	}
	c.ackPending = f.Seq
}

// ackDownstream handles the device's cumulative ACK of downstream DATA.
func (c *conn) ackDownstream(seq uint32) {
	s := c.sess
	s.mu.Lock()
	if s.conn == c {
		s.outbox.ack(seq)
	}
	s.mu.Unlock()
}

// rateLimited drops the frame, tells the device (at most once a second) and
// closes it when the excess has lasted RateExcessClose.
func (c *conn) rateLimited() {
	g := c.g
	g.metrics.drop(dropRateLimit)
	now := g.wheel.Now()
	second := g.wheel.Ticks(time.Second)
	if now-c.rl.lastDrop > second {
		c.rl.excessStart = now
	}
	c.rl.lastDrop = now
	if now-c.rl.excessStart >= g.wheel.Ticks(g.cfg.RateExcessClose) {
		c.fail(protocol.CodeRateLimited, "rate limit exceeded, closing")
		return
	}
	if now-c.rl.lastNotice >= second || c.rl.lastNotice == 0 {
		c.rl.lastNotice = now
		c.queue(protocol.TypeError, 0, 0, errorPayload(protocol.CodeRateLimited, "rate limit exceeded"))
		g.metrics.errorSent(protocol.CodeRateLimited)
	}
}
