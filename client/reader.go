package client

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// readLoop is the reader goroutine of cn: it decodes frames until the
// connection ends.
func (c *Client) readLoop(cn *conn) {
	defer c.wg.Done()
	defer close(cn.done)
	for {
		f, err := cn.fr.NextFrame()
		if err != nil {
			cn.close(fmt.Errorf("client: read from %s: %w", cn.addr, err))
			return
		}
		if err := c.handle(cn, f); err != nil {
			cn.close(err)
			return
		}
	}
}

// handle acts on one frame from the gateway; an error ends the connection.
func (c *Client) handle(cn *conn, f protocol.Frame) error {
	switch f.Type {
	case protocol.TypeData:
		return c.onData(cn, f)
	case protocol.TypeAck:
		c.mu.Lock()
		c.releaseSlots(c.out.ackThrough(f.Seq))
		c.mu.Unlock()
	case protocol.TypePing:
		c.mu.Lock()
		if len(c.in.pongs) < maxQueuedPongs {
			c.in.pongs = append(c.in.pongs, append([]byte(nil), f.Payload...))
		}
		c.mu.Unlock()
		c.wake()
	case protocol.TypeGoAway:
		c.onGoAway(cn, f.Payload)
	case protocol.TypeError:
		err := decodeError(f.Payload)
		var e *Error
		if errors.As(err, &e) && e.Code == protocol.CodeRateLimited {
			// The gateway dropped a frame, and drops every later reliable
			// frame as a gap until the missing one comes again: go back
			// and resend everything unacknowledged, once the rate allows.
			c.rateLimited.Add(1)
			cn.resendAt.CompareAndSwap(0, time.Now().Add(RateLimitBackoff).UnixNano())
			c.wake()
			return nil
		}
		return err
	}
	return nil
}

// onData delivers DATA to Recv's queue, dropping reliable duplicates.
func (c *Client) onData(cn *conn, f protocol.Frame) error {
	reliable := f.Reliable()
	if reliable {
		c.mu.Lock()
		deliver := c.in.accept(f.Seq)
		c.mu.Unlock()
		if !deliver {
			c.duplicates.Add(1)
			c.wake()
			return nil
		}
	}
	m := Message{Payload: append([]byte(nil), f.Payload...), Reliable: reliable}
	if reliable {
		m.Seq = f.Seq
	}
	if !c.deliver(cn, m) {
		return ErrClosed
	}
	c.received.Add(1)
	if reliable {
		c.mu.Lock()
		c.in.delivered = f.Seq
		c.in.ackDue = true
		c.mu.Unlock()
		c.wake()
	}
	return nil
}

// deliver hands m to Recv's queue, waiting while it is full; false when the
// client or the connection closed meanwhile.
func (c *Client) deliver(cn *conn, m Message) bool {
	select {
	case c.recvCh <- m:
		return true
	default:
	}
	cn.delivering.Store(true)
	defer func() {
		cn.lastRecv.Store(time.Now().UnixNano())
		cn.delivering.Store(false)
	}()
	select {
	case c.recvCh <- m:
		return true
	case <-c.done:
		return false
	case <-cn.closed:
		return false
	}
}

// onGoAway plans the reconnect asked for by a GOAWAY: to a redirect address
// if any, after a random delay within retry_ms.
func (c *Client) onGoAway(cn *conn, p []byte) {
	var g protocol.GoAway
	_ = protocol.Unmarshal(p, &g)
	targets := append([]string(nil), g.Redirect...)
	rand.Shuffle(len(targets), func(i, j int) { targets[i], targets[j] = targets[j], targets[i] })
	plan := &goawayPlan{at: time.Now().Add(jitter(time.Duration(g.RetryMS) * time.Millisecond)), targets: targets}
	if cn.goaway.CompareAndSwap(nil, plan) {
		c.log.Info("gateway sent GOAWAY", "reason", g.Reason, "retry_ms", g.RetryMS, "redirect", g.Redirect)
		c.wake()
	}
}
