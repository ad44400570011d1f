package server

import (
	"sync"
	"syscall"

	"github.com/switchyard-gw/switchyard/internal/rawio"
	"github.com/switchyard-gw/switchyard/protocol"
)

// The write path.
//
// netpoll's own Flush blocks the calling goroutine until the socket took
// every byte, and the bytes it keeps per connection stay allocated. Neither
// fits a gateway that must never block its handlers on a slow device, so the
// gateway writes to the socket itself:
//
//	any goroutine ──lock wmu──▶ append frame to c.out ──▶ write(fd)
//	                                                  │ EAGAIN / partial
//	                                                  ▼
//	                         rest stays in c.out, c joins the backlog list;
//	                         the wheel goroutine retries every tick; more
//	                         than MaxOutbound bytes waiting = slow consumer.
//
// c.out is a pooled buffer, held only while bytes wait, so an idle
// connection keeps no write buffer at all. netpoll closes the fd only after
// the gateway's close callback ran, and that callback sets c.closed under
// wmu, so a write never reaches a closed (or reused) fd.

// outBufSize is the capacity of a pooled outbound buffer; it grows past this
// only while a device is behind.
const outBufSize = 4096

var outPool = sync.Pool{New: func() any { b := make([]byte, 0, outBufSize); return &b }}

// appendLocked queues one frame. The caller holds c.wmu and has checked
// c.writable().
func (c *conn) appendLocked(t protocol.Type, flags protocol.Flags, seq uint32, payload []byte) {
	if c.out == nil {
		c.out = outPool.Get().(*[]byte)
	}
	*c.out = protocol.AppendFrame(*c.out, t, flags, seq, payload)
	c.countOutLocked(t, flags, seq, len(payload))
}

// appendFramesLocked queues frames, whole encoded frames one after
// another (a link reader's staged ones: WriteFrames). The caller holds
// c.wmu and has checked c.writable().
func (c *conn) appendFramesLocked(frames []byte) {
	if c.out == nil {
		c.out = outPool.Get().(*[]byte)
	}
	*c.out = append(*c.out, frames...)
	c.countFramesLocked(frames)
}

// countFramesLocked counts whole encoded frames as queued. The caller
// holds c.wmu.
func (c *conn) countFramesLocked(frames []byte) {
	for len(frames) >= protocol.HeaderSize {
		h := protocol.ParseHeader(frames)
		c.countOutLocked(h.Type, h.Flags, h.Seq, h.PayloadLen())
		frames = frames[protocol.LengthSize+int(h.Length):]
	}
}

// countOutLocked counts (and traces) one frame queued with an n-byte
// payload. The caller holds c.wmu.
func (c *conn) countOutLocked(t protocol.Type, flags protocol.Flags, seq uint32, n int) {
	if c.g.trace.Any() { // the one cost of tracing when it is off
		c.traceOut(t, flags, seq, n)
	}
	k, size := sentKind[t], protocol.FrameSize(n)
	if k < nHotKinds {
		c.sent[k].frames++
		c.sent[k].bytes += uint32(size)
		return
	}
	if m := c.g.metrics; m.framesOut[k] != nil { // nil: a type the gateway never sends
		m.framesOut[k].Inc()
		m.bytesOut[k].Add(size)
	}
}

// writable reports whether frames may still be queued. The caller holds wmu.
func (c *conn) writable() bool { return !c.closed && !c.closing }

// setClosing and setClosed set closing and closed, and with them ending,
// their lock-free copy (isClosing). The caller holds wmu.
func (c *conn) setClosing() { c.closing = true; c.ending.Store(true) }
func (c *conn) setClosed()  { c.closed = true; c.ending.Store(true) }

// flushLocked hands queued bytes to the socket. It returns a disconnect
// reason when the connection must be closed (the caller closes it after
// releasing wmu).
func (c *conn) flushLocked() string {
	if c.tls != nil && !c.closed {
		c.tls.sealLocked()
	}
	if c.out == nil || c.closed {
		return ""
	}
	return c.writeLocked(*c.out)
}

// writeLocked writes buf to the socket until it would block and keeps
// what is left in c.out; buf is *c.out, or the caller's bytes when
// nothing is queued (c.out nil: WriteFrames). It returns flushLocked's
// disconnect reason.
func (c *conn) writeLocked(buf []byte) string {
	for len(buf) > 0 {
		n, err := rawio.Write(c.fd, buf) // raw: never blocks, wakes no sysmon (internal/rawio)
		if n > 0 {
			buf = buf[n:]
		}
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			break
		}
		if err != nil {
			c.releaseOutLocked()
			return reasonWriteError
		}
	}
	c.countSentLocked()
	if len(buf) == 0 {
		c.releaseOutLocked()
		return ""
	}
	// Keep the unwritten tail at the front of the buffer.
	if c.out == nil {
		c.out = outPool.Get().(*[]byte)
	}
	*c.out = append((*c.out)[:0], buf...)
	if c.tls != nil {
		c.tls.sealed = len(*c.out)
	}
	var why string
	if len(*c.out) > c.g.live.Load().maxOutbound && c.writable() {
		// Once only: a closing connection's deadline is its linger, which
		// a second shut would push back at every retry.
		c.slowLocked()
		why = reasonSlowConsumer
	}
	if !c.inBacklog {
		c.inBacklog = true
		c.g.addBacklog(c)
	}
	return why
}

// slowLocked ends a slow consumer, a device that does not read what it is
// sent: ERROR 503 is queued after what is waiting (the socket may hold the
// start of a queued frame, so nothing queued can be dropped) and the
// connection closes once the socket took it, or CloseLinger later (shut).
// What is queued stays bounded: MaxOutbound and one ERROR. The caller holds
// wmu.
func (c *conn) slowLocked() {
	if !c.writable() {
		return
	}
	c.appendLocked(protocol.TypeError, 0, 0, errorPayload(protocol.CodeUnavailable, "slow consumer, closing"))
	c.setClosing()
	if c.reason == "" {
		c.reason = reasonSlowConsumer
	}
	c.g.metrics.errorSent(protocol.CodeUnavailable)
}

// slowConsumer ends a slow consumer from outside the write path (its
// session's outbox is over MaxOutbox).
func (c *conn) slowConsumer() {
	c.wmu.Lock()
	c.slowLocked()
	_ = c.flushLocked()
	c.wmu.Unlock()
	c.shut(reasonSlowConsumer)
}

// countSentLocked moves the connection's counts of frames queued (of the
// hot kinds) into the shared counters: once per flush, not once per frame.
func (c *conn) countSentLocked() {
	for k := range c.sent {
		if n := c.sent[k].frames; n > 0 {
			c.g.metrics.framesOut[k].Add(int(n))
			c.g.metrics.bytesOut[k].Add(int(c.sent[k].bytes))
			c.sent[k] = sentCount{}
		}
	}
}

func (c *conn) releaseOutLocked() {
	if c.out == nil {
		return
	}
	if c.tls != nil {
		c.tls.sealed = 0
	}
	if cap(*c.out) <= 4*outBufSize {
		*c.out = (*c.out)[:0]
		outPool.Put(c.out)
	}
	c.out = nil
}

// send queues one frame from any goroutine and writes it out at once.
func (c *conn) send(t protocol.Type, flags protocol.Flags, seq uint32, payload []byte) {
	c.wmu.Lock()
	if !c.writable() {
		c.wmu.Unlock()
		return
	}
	c.appendLocked(t, flags, seq, payload)
	why := c.flushLocked()
	c.wmu.Unlock()
	if why != "" {
		c.shut(why)
	}
}

// flush writes out whatever the handler queued during its batch, with the
// pending cumulative ACK last; with a remote backend, first the batch's
// envelopes to the session's shard (one link write per batch).
func (c *conn) flush() {
	if c.bind != nil {
		c.g.remote.Flush(c)
	}
	c.wmu.Lock()
	if c.ackPending > c.ackSent && c.writable() {
		c.appendLocked(protocol.TypeAck, 0, c.ackPending, nil)
		c.ackSent = c.ackPending
	}
	why := c.flushLocked()
	c.wmu.Unlock()
	if why != "" {
		c.shut(why)
	}
}

// writeOut writes out what other goroutines queued (link readers); unlike
// flush it adds no ACK, which is the handler's.
func (c *conn) writeOut() {
	c.wmu.Lock()
	why := c.flushLocked()
	c.wmu.Unlock()
	if why != "" {
		c.shut(why)
	}
}

// addBacklog remembers a connection whose socket would not take all bytes.
func (g *Gateway) addBacklog(c *conn) {
	g.backlogMu.Lock()
	g.backlog = append(g.backlog, c)
	g.backlogMu.Unlock()
	g.metrics.backlog.Add(1)
	g.wheel.Wake() // it retries on its ticks, and may be asleep
}

// retryBacklog runs on the wheel goroutine on each tick while it has work;
// it reports whether connections are left in the backlog (the wheel keeps
// ticking for them).
func (g *Gateway) retryBacklog() bool {
	g.backlogMu.Lock()
	list := g.backlog
	g.backlog = g.spare[:0]
	g.backlogMu.Unlock()
	for i, c := range list {
		list[i] = nil
		c.wmu.Lock()
		c.inBacklog = false
		g.metrics.backlog.Add(-1)
		why := c.flushLocked()
		closeAfter := c.closing && c.out == nil
		c.wmu.Unlock()
		if why != "" {
			c.shut(why)
		} else if closeAfter {
			c.lingerClose()
		}
	}
	g.spare = list[:0]
	g.backlogMu.Lock()
	more := len(g.backlog) > 0
	g.backlogMu.Unlock()
	return more
}
