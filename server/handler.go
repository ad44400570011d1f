package server

import (
	"context"
	"encoding/binary"
	"math"
	"sync"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/switchyard-gw/switchyard/protocol"
)

// onRequest is netpoll's handler: it runs when input arrived and consumes
// all of it before it returns.
//
//	netpoll input ──▶ onRequest ──▶ each whole frame: ReadFrame → handle → Release
//	                     │            (replies are queued in c.out)
//	                     ├─ a frame that has only begun to arrive: its bytes
//	                     │  move to c.partial and the handler returns
//	                     └─ end of the batch: flush (one write syscall)
//
// netpoll calls its handler again at once while input is left unread, and a
// handler that waited for the rest of a frame would hold a goroutine per
// slow device. So the handler never leaves input behind and never waits:
// the start of an incomplete frame is copied out (a pooled buffer, held only
// until the frame is whole) and completed by the next call.
//
// netpoll has no read backpressure (v0.7: no read threshold, no way to stop
// reading one connection): its poller keeps reading a connection's input
// into the buffer while the handler works through it. So the handler looks
// at what is buffered before each frame, and a device whose unread input
// passes MaxUnread (it sends faster than the gateway handles it) is closed
// at once with 413 (flood). What one connection can make the gateway buffer
// is then MaxUnread plus what the poller reads between two looks.
func (g *Gateway) onRequest(ctx context.Context, nc netpoll.Connection) error {
	c, ok := ctx.(*conn)
	if !ok {
		return nc.Close()
	}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	r := nc.Reader()
	if c.owesProxy() && !c.proxyHeader(r) {
		return nil // the header needs more bytes, or was refused
	}
	b := batch{start: time.Now()}
	batchLen, prevRecv := r.Len(), c.lastRecv.Load()
	c.rl.batchDrops = 0
	if c.tls != nil {
		c.tlsInput(r, &b)
	} else {
		c.frames(r, &b)
	}
	if !c.readOnce {
		c.readOnce = true
		if connState(c.st.Load()) == stHandshake {
			c.stopWaiting(false) // no whole HELLO yet: it waits on its device (shed.go)
		}
	}
	if r.Len() > 0 && c.isClosing() {
		// A closing connection's input is never handled: thrown away, so
		// that netpoll neither keeps it nor calls the handler again for it
		// while the ERROR lingers.
		_ = r.Skip(r.Len())
		_ = r.Release()
	}
	c.flush()
	b.count(g)
	if g.wheel.Now()-prevRecv >= g.quietTicks { // a device that sends seldom (netpoll_tune.go)
		inputNodes.afterBatch(nc, batchLen)
	}
	return nil
}

// frameInput is what the frame loop reads: netpoll's input, or the
// plaintext of a TLS connection (tls.go).
type frameInput interface {
	protocol.Reader
	Release() error
}

// frames handles every whole frame of r and keeps the start of an
// incomplete one (c.partial). The caller holds pmu. More than max_unread
// buffered (the poller reads on while the handler works) closes the
// connection: with TLS that bounds the plaintext of what was read.
func (c *conn) frames(r frameInput, b *batch) {
	g := c.g
	maxUnread := g.maxUnread
	for r.Len() > 0 && !c.isClosing() {
		if r.Len() > maxUnread {
			c.flood(protocol.CodeTooLarge, reasonUnreadLimit, "unread input over max_unread, closing")
			break
		}
		if c.partial != nil {
			c.continuePartial(r, b)
			continue
		}
		whole, have, err := frameBuffered(r, g.cfg.MaxFrame)
		if err != nil {
			c.failErr(err)
			break
		}
		if !whole {
			// Only the have bytes that were looked at: the poller may have
			// added the rest of the frame since, and a whole frame taken into
			// c.partial would wait there for input that may never come.
			c.startPartial(r, have)
			if c.partial == nil {
				break // not taken (netpoll refused the read): never spin on it
			}
			continue
		}
		f, err := protocol.ReadFrame(r, g.cfg.MaxFrame)
		if err != nil {
			c.failErr(err)
			break
		}
		c.frame(&f, b)
		_ = r.Release()
	}
}

// batch accounts for one call of the handler: counters are added to the
// shared metrics once per batch, not once per frame.
type batch struct {
	start  time.Time
	frames int
	kinds  [nKinds]struct{ frames, bytes int }
}

// count adds the batch to the shared counters: frames and bytes by kind,
// and the batch's handling time and size (the time is the whole batch's,
// which is what switchyard_batch_handle_seconds says: a per-frame time
// would cost two clock reads per frame).
func (b *batch) count(g *Gateway) {
	if b.frames == 0 {
		return
	}
	m := g.metrics
	for k := range b.kinds {
		if n := b.kinds[k].frames; n > 0 {
			m.framesIn[k].Add(n)
			m.bytesIn[k].Add(b.kinds[k].bytes)
		}
	}
	m.batchDuration.Update(time.Since(b.start).Seconds())
	m.batchFrames.Update(float64(b.frames))
}

// frame handles one whole frame.
func (c *conn) frame(f *protocol.Frame, b *batch) {
	b.frames++
	k := &b.kinds[recvKind[f.Type]]
	k.frames++
	k.bytes += protocol.FrameSize(len(f.Payload))
	c.lastRecv.Store(c.g.wheel.Now())
	if c.g.trace.Any() { // the one cost of tracing when it is off
		c.traceFrame(f)
	}
	c.handle(f)
}

// frameBuffered reports whether r holds a whole frame. An invalid length
// field is an error as soon as its 4 bytes are there.
func frameBuffered(r frameInput, maxPayload int) (whole bool, have int, err error) {
	have = r.Len() // once: the poller may add more while the handler looks
	if have < protocol.LengthSize {
		return false, have, nil
	}
	p, err := r.Peek(protocol.LengthSize)
	if err != nil {
		return false, have, err
	}
	n := binary.BigEndian.Uint32(p)
	if err := protocol.CheckLength(n, maxPayload); err != nil {
		return false, have, err
	}
	return uint64(have) >= uint64(n)+protocol.LengthSize, have, nil
}

// partialPool holds reassembly buffers for frames that arrive in pieces.
var partialPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// startPartial moves the first n buffered bytes (the start of one frame,
// all that was there when frameBuffered looked) out of netpoll's buffer.
func (c *conn) startPartial(r frameInput, n int) {
	p, err := r.Next(n)
	if err != nil {
		return
	}
	buf := partialPool.Get().(*[]byte)
	*buf = append((*buf)[:0], p...)
	c.partial = buf
	_ = r.Release()
}

// continuePartial appends what the incomplete frame still needs and, once
// it is whole, handles it.
func (c *conn) continuePartial(r frameInput, b *batch) {
	buf := *c.partial
	want := protocol.LengthSize
	if len(buf) >= protocol.LengthSize {
		want += int(binary.BigEndian.Uint32(buf))
	}
	p, err := r.Next(min(r.Len(), want-len(buf)))
	if err != nil {
		c.dropPartial()
		return
	}
	buf = append(buf, p...)
	*c.partial = buf
	_ = r.Release()
	if len(buf) < protocol.LengthSize {
		return
	}
	f, _, err := protocol.Decode(buf, c.g.cfg.MaxFrame)
	switch {
	case err == protocol.ErrIncomplete:
		return
	case err != nil:
		c.dropPartial()
		c.failErr(err)
		return
	}
	c.frame(&f, b)
	c.dropPartial()
}

func (c *conn) dropPartial() {
	if c.partial == nil {
		return
	}
	if cap(*c.partial) <= 64<<10+protocol.HeaderSize {
		*c.partial = (*c.partial)[:0]
		partialPool.Put(c.partial)
	}
	c.partial = nil
}

// isClosing reports that the connection is closing or closed: nothing more
// is handled or written. Lock-free: the frame loop asks it per frame, and
// wmu is the lock a link reader writes the device under.
func (c *conn) isClosing() bool { return c.ending.Load() }

// handle dispatches one frame. f.Payload is valid only during the call.
func (c *conn) handle(f *protocol.Frame) {
	if !c.ready.Load() {
		if c.opening.Load() {
			c.hold(f)
			return
		}
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

// data hands upstream DATA to the backend.
func (c *conn) data(f *protocol.Frame) {
	if f.Reliable() && f.Seq == 0 {
		c.fail(protocol.CodeBadRequest, "reliable DATA with seq 0")
		return
	}
	c.g.backend.Data(c, *f)
}

// ackDownstream hands the device's cumulative ACK of downstream DATA to the
// backend.
func (c *conn) ackDownstream(seq uint32) { c.g.backend.Ack(c, seq) }

// A device that has more frames dropped over its rate in one handler call
// (one batch of input) than floodDrops is flooding, not merely fast: it
// wrote thousands of frames beyond its burst without waiting for anything.
// It is closed at once rather than after RateExcessClose. The threshold is
// rateFloodBursts bursts (16,000 frames with the defaults), at least
// rateFloodMin (a small configured burst must not make a short burst a
// flood), at most what batchDrops counts.
const (
	rateFloodBursts = 4
	rateFloodMin    = 1024
)

func floodDrops(lv *live) uint16 {
	return uint16(min(max(rateFloodBursts*lv.rateBurst, rateFloodMin), math.MaxUint16))
}

// rateLimited drops the frame, tells the device (at most once a second) and
// closes it when the excess has lasted RateExcessClose, or at once when it
// is a flood (rateFloodBursts).
func (c *conn) rateLimited() {
	g := c.g
	g.metrics.drop(dropRateLimit)
	now := g.wheel.Now()
	second := g.wheel.Ticks(time.Second)
	if now-c.rl.lastDrop > second {
		c.rl.excessStart = now
	}
	if now-c.rl.lastDrop > second || !c.rl.dropped {
		g.metrics.rateLimitDevice.Inc() // an excess began: once per episode; drops count the frames
	}
	c.rl.dropped = true
	c.rl.lastDrop = now
	if c.rl.batchDrops < math.MaxUint16 {
		c.rl.batchDrops++
	}
	lv := g.live.Load()
	if c.rl.batchDrops >= floodDrops(lv) {
		c.flood(protocol.CodeRateLimited, reasonRateFlood, "far over the rate limit, closing")
		return
	}
	if now-c.rl.excessStart >= lv.excessTicks {
		c.refused(protocol.CodeRateLimited, c.sess.device, "rate limit exceeded, closing")
		return
	}
	if now-c.rl.lastNotice >= second || c.rl.lastNotice == 0 {
		c.rl.lastNotice = now
		c.queue(protocol.TypeError, 0, 0, errorPayload(protocol.CodeRateLimited, "rate limit exceeded"))
		g.metrics.errorSent(protocol.CodeRateLimited)
	}
}

// flood closes a device that sends far more than the gateway handles (its
// unread input passed MaxUnread, or it is far over its rate): ERROR code
// if the socket takes it now, then the close at once. Not fail's linger:
// while a closing connection waits, netpoll keeps reading its input, which
// is what must stop.
func (c *conn) flood(code int, reason, msg string) {
	device := ""
	if c.sess != nil {
		device = c.sess.device
	}
	c.g.refusals.note(code, device, c.remote(), msg)
	c.strike() // penalty.go
	c.wmu.Lock()
	if c.writable() {
		c.appendLocked(protocol.TypeError, 0, 0, errorPayload(code, msg))
		_ = c.flushLocked()
		c.g.metrics.errorSent(code)
	}
	if c.reason == "" {
		c.reason = reason
	}
	c.setClosing()
	c.wmu.Unlock()
	c.nc.Close()
}
