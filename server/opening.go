package server

import "github.com/switchyard-gw/switchyard/protocol"

// Opening: between a good HELLO and WELCOME a remote shard binds the
// session (server/remote); the frames the device sends meanwhile are held
// here, on the device side, and handled in order once it is bound.

// maxPending bounds the bytes of frames a device may send between HELLO and
// WELCOME, while a remote shard binds its session.
const maxPending = 64 << 10

// hold keeps a frame that arrived while the session is being bound, to be
// handled in order once it is (opened).
func (c *conn) hold(f *protocol.Frame) {
	if c.releaseDone {
		return
	}
	if c.pending == nil {
		c.pending = partialPool.Get().(*[]byte)
		*c.pending = (*c.pending)[:0]
	}
	if len(*c.pending)+protocol.FrameSize(len(f.Payload)) > maxPending {
		c.fail(protocol.CodeUnavailable, "too much data before WELCOME")
		return
	}
	*c.pending = protocol.AppendFrame(*c.pending, f.Type, f.Flags, f.Seq, f.Payload)
}

// Opened implements remote.Device: openDone for a backend that answers
// from another goroutine (a link reader), which holds pmu (Lock) and has
// checked Opening. It sends WELCOME, replays the held frames and writes it
// all out. The connection may close meanwhile (its close callback runs on
// the poller, or here through fail): the held frames stay until pmu is
// released (Unlock, unlockHandler).
func (c *conn) Opened(resumed bool, last uint32) {
	c.openDone(resumed, last)
	if c.pending != nil {
		b := *c.pending
		for len(b) > 0 && !c.isClosing() {
			f, n, err := protocol.Decode(b, c.g.cfg.MaxFrame)
			if err != nil {
				break
			}
			c.handle(&f)
			b = b[n:]
		}
		c.dropPending()
	}
	c.flush()
}

func (c *conn) dropPending() {
	if c.pending == nil {
		return
	}
	*c.pending = (*c.pending)[:0]
	partialPool.Put(c.pending)
	c.pending = nil
}
