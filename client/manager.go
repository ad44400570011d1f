package client

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// minWake is the shortest sleep of the manager's timer, so that a deadline
// in the past never turns into a busy loop.
const minWake = 5 * time.Millisecond

// resendBatch is how many bytes of resent frames go out in one write.
const resendBatch = 64 << 10

// run is the manager goroutine: it serves each connection, and after one
// ends reconnects, until Close or a final error.
func (c *Client) run(cn *conn) {
	defer c.wg.Done()
	for {
		cause := c.serve(cn)
		c.mu.Lock()
		c.cur = nil
		c.mu.Unlock()
		switch {
		case c.ctx.Err() != nil:
			return
		case isFinal(cause):
			c.log.Warn("gateway refused the session", "err", cause)
			c.stop(cause)
			return
		case c.cfg.DisableReconnect:
			c.stop(fmt.Errorf("%w: %w", ErrDisconnected, cause))
			return
		}
		c.log.Info("connection ended, reconnecting", "addr", cn.addr, "cause", cause)
		if cn = c.reconnect(cn); cn == nil {
			return
		}
	}
}

// attach makes cn the live connection: it applies the WELCOME, starts the
// reader and resends the unacknowledged reliable frames, all before any new
// Send can write.
func (c *Client) attach(cn *conn, w protocol.Welcome) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	resend := c.applyWelcome(w)
	c.cur = cn
	c.mu.Unlock()
	c.wg.Add(1)
	go c.readLoop(cn)
	c.resend(cn, resend)
}

// applyWelcome records w and returns the frames to resend. Guarded by mu.
func (c *Client) applyWelcome(w protocol.Welcome) []outFrame {
	if w.MaxFrame <= 0 {
		w.MaxFrame = protocol.DefaultMaxFrame
	}
	if c.welcome.Session != "" && !w.Resumed {
		c.log.Warn("session not resumed; starting a new one",
			"old", c.welcome.Session, "new", w.Session, "pending", len(c.out.frames))
		c.out.renumber()
		c.in = inbox{}
	}
	if w.Resumed && w.Last >= c.out.next && c.out.next > 0 {
		c.log.Warn("gateway accepted more than was sent", "last", w.Last, "next", c.out.next)
	}
	c.releaseSlots(c.out.ackThrough(w.Last))
	c.in.pongs, c.in.ackDue = nil, false
	c.welcome, c.resume = w, w.Resume
	return c.out.snapshot()
}

// resend writes frames on cn in order, in batches. Called with wmu held.
func (c *Client) resend(cn *conn, frames []outFrame) {
	var again, first uint64
	b := c.wbuf[:0]
	for i, f := range frames {
		b = protocol.AppendFrame(b, protocol.TypeData, protocol.FlagAckRequested, f.seq, f.payload)
		if f.sent {
			again++
		} else {
			first++
		}
		if len(b) < resendBatch && i < len(frames)-1 {
			continue
		}
		c.resends.Add(again)
		c.sent.Add(first)
		again, first = 0, 0
		if cn.write(b, c.cfg.WriteTimeout) != nil {
			break
		}
		b = b[:0]
	}
	c.wbuf = b[:0]
	if len(frames) > 0 {
		c.log.Debug("resent unacknowledged frames", "count", len(frames), "first", frames[0].seq)
	}
}

// releaseSlots frees n MaxPending slots and wakes Flush. Guarded by mu.
func (c *Client) releaseSlots(n int) {
	if n == 0 {
		return
	}
	for range n {
		<-c.slots
	}
	close(c.acked)
	c.acked = make(chan struct{})
}

// serve runs timers and control writes for cn until it ends or the client
// closes; it returns why cn ended (nil after Close).
func (c *Client) serve(cn *conn) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.writeControl(cn)
		timer.Reset(c.tick(cn))
		select {
		case <-c.ctx.Done():
			cn.close(ErrClosed)
			<-cn.done
			return nil
		case <-cn.done:
			return cn.cause()
		case <-c.kick:
		case <-timer.C:
		}
	}
}

// heartbeat is the PING interval for the current session.
func (c *Client) heartbeat() time.Duration {
	c.mu.Lock()
	hb := time.Duration(c.welcome.HB) * time.Second
	c.mu.Unlock()
	if hb <= 0 {
		hb = DefaultHeartbeat
	}
	if c.cfg.Heartbeat > 0 && c.cfg.Heartbeat < hb {
		hb = c.cfg.Heartbeat
	}
	return hb
}

// tick does what is due on cn — GOAWAY reconnect, dead connection, PING —
// and returns how long to sleep until something may be due again.
func (c *Client) tick(cn *conn) time.Duration {
	now := time.Now()
	hb := c.heartbeat()
	plan := cn.goaway.Load()
	if plan != nil && !now.Before(plan.at) {
		cn.close(errGoAway)
		return time.Hour
	}
	lastRecv := time.Unix(0, cn.lastRecv.Load())
	if !cn.delivering.Load() && now.Sub(lastRecv) >= 3*hb {
		cn.close(errDead)
		return time.Hour
	}
	if at := cn.resendAt.Load(); at != 0 {
		if now.UnixNano() < at {
			return max(time.Duration(at-now.UnixNano()), minWake)
		}
		cn.resendAt.Store(0)
		c.goBack(cn)
	}
	stuckUntil := c.checkStuck(cn, now)
	lastSent := time.Unix(0, cn.lastSent.Load())
	if now.Sub(lastSent) >= hb {
		c.wmu.Lock()
		c.wbuf = protocol.AppendFrame(c.wbuf[:0], protocol.TypePing, 0, 0, nil)
		_ = cn.write(c.wbuf, c.cfg.WriteTimeout)
		c.wmu.Unlock()
		lastSent = now
	}
	d := min(lastSent.Add(hb).Sub(now), lastRecv.Add(3*hb).Sub(now))
	if plan != nil {
		d = min(d, plan.at.Sub(now))
	}
	if !stuckUntil.IsZero() {
		d = min(d, stuckUntil.Sub(now))
	}
	return max(d, minWake)
}

// checkStuck goes back and resends when the oldest unacknowledged reliable
// frame has waited Config.ResendTimeout for its ACK (see there). It
// returns when to look again (zero: nothing is pending). Only cn's serve
// goroutine calls it.
func (c *Client) checkStuck(cn *conn, now time.Time) time.Time {
	c.mu.Lock()
	pending := len(c.out.frames) > 0
	var seq uint32
	if pending {
		seq = c.out.frames[0].seq
	}
	c.mu.Unlock()
	switch {
	case !pending:
		cn.stuckSince = time.Time{}
		return time.Time{}
	case seq != cn.stuckSeq || cn.stuckSince.IsZero():
		cn.stuckSeq, cn.stuckSince = seq, now
	case now.Sub(cn.stuckSince) >= c.cfg.ResendTimeout && cn.resendAt.Load() == 0:
		c.timeoutResends.Add(1)
		c.goBack(cn)
		cn.stuckSince = now
	}
	return cn.stuckSince.Add(c.cfg.ResendTimeout)
}

// goBack resends every unacknowledged reliable frame on cn, in order. The
// gateway re-ACKs what it already had and accepts the rest.
func (c *Client) goBack(cn *conn) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	frames := c.out.snapshot()
	c.mu.Unlock()
	c.resend(cn, frames)
}

// writeControl writes the due ACK and PONGs on cn.
func (c *Client) writeControl(cn *conn) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	b := c.wbuf[:0]
	if c.in.ackDue {
		b = protocol.AppendFrame(b, protocol.TypeAck, 0, c.in.delivered, nil)
		c.in.ackDue = false
	}
	for _, p := range c.in.pongs {
		b = protocol.AppendFrame(b, protocol.TypePong, 0, 0, p)
	}
	c.in.pongs = nil
	c.mu.Unlock()
	if len(b) > 0 {
		_ = cn.write(b, c.cfg.WriteTimeout)
	}
	c.wbuf = b[:0]
}

// reconnect dials until a handshake succeeds and returns the attached
// connection, or nil when the client closed or was refused for good.
func (c *Client) reconnect(old *conn) *conn {
	first := []string{old.addr}
	var wait time.Duration
	bo := backoff{min: c.cfg.ReconnectMin, max: c.cfg.ReconnectMax}
	if plan := old.goaway.Load(); plan != nil {
		first = plan.targets
		wait = time.Until(plan.at)
	} else {
		wait = bo.next()
	}
	targets := reconnectTargets(first, c.cfg.Addr, c.cfg.Fallbacks)
	for attempt := 0; ; attempt++ {
		if !c.sleep(wait) {
			return nil
		}
		wait = bo.next()
		addr := targets[attempt%len(targets)]
		cn, w, err := c.handshake(c.ctx, addr)
		if hint := retryHint(err); hint > 0 {
			wait = max(wait, hint/2+jitter(hint/2))
		}
		switch {
		case c.ctx.Err() != nil:
			return nil
		case isFinal(err):
			c.log.Warn("gateway refused the session", "addr", addr, "err", err)
			c.stop(err)
			return nil
		case err != nil:
			c.log.Info("reconnect failed", "addr", addr, "attempt", attempt+1, "err", err)
			continue
		}
		c.reconnects.Add(1)
		c.log.Info("reconnected", "addr", addr, "session", w.Session, "resumed", w.Resumed, "last", w.Last)
		c.attach(cn, w)
		return cn
	}
}

// retryHint is the retry_ms of the gateway's ERROR in err, or 0.
func retryHint(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.Retry
	}
	return 0
}

// reconnectTargets is the order in which a reconnect tries gateways:
// first (the gateway the client was on, or a GOAWAY's redirects), then
// addr, then the fallbacks, each address once.
func reconnectTargets(first []string, addr string, fallbacks []string) []string {
	var out []string
	for _, list := range [][]string{first, {addr}, fallbacks} {
		for _, a := range list {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// sleep waits d; it returns false when the client closed meanwhile.
func (c *Client) sleep(d time.Duration) bool {
	if d <= 0 {
		return c.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}
