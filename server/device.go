package server

import (
	"github.com/switchyard-gw/switchyard/protocol"
	"github.com/switchyard-gw/switchyard/server/remote"
)

// A conn is the shard side's remote.Device: what follows is all the shard
// side (server/remote) can do with a device connection. Opened is in
// opening.go.
var _ remote.Device = (*conn)(nil)

// Session returns the session's id and device id (set by the handshake
// before the backend's Open).
func (c *conn) Session() (protocol.SessionID, string) { return c.sess.id, c.sess.device }

// Binding returns the shard side's state of the session (nil with the
// embedded echo backend, which never asks).
func (c *conn) Binding() *remote.Binding { return c.bind }

// Lock takes pmu: no frame of the device is handled while it is held.
func (c *conn) Lock() { c.pmu.Lock() }

// Unlock releases pmu taken outside the netpoll handler (unlockHandler).
func (c *conn) Unlock() { c.unlockHandler() }

// Opening reports that the connection waits for its backend to bind the
// session and is not closing. The caller holds pmu.
func (c *conn) Opening() bool { return c.opening.Load() && !c.isClosing() }

// Closing reports that nothing more is written to the device.
func (c *conn) Closing() bool { return c.isClosing() }

// Queue queues one frame for the device (queue).
func (c *conn) Queue(t protocol.Type, flags protocol.Flags, seq uint32, payload []byte) {
	c.queue(t, flags, seq, payload)
}

// Flush writes out what was queued, without the handler's ACK (writeOut).
func (c *conn) Flush() { c.writeOut() }

// WriteFrames queues whole encoded frames and writes out what is queued,
// with one take of wmu (a link reader's staged frames). With nothing
// queued before them they are written from frames itself, and only what
// the socket does not take is copied.
func (c *conn) WriteFrames(frames []byte) {
	c.wmu.Lock()
	if !c.writable() {
		c.wmu.Unlock()
		return
	}
	var why string
	if c.out == nil && c.tls == nil {
		c.countFramesLocked(frames)
		why = c.writeLocked(frames)
	} else {
		c.appendFramesLocked(frames)
		why = c.flushLocked()
	}
	c.wmu.Unlock()
	if why != "" {
		c.shut(why)
	}
}

// Fail sends ERROR code and closes the connection (fail).
// A refusal during the handshake (the shard is unavailable, or refused
// the session) is logged like the device side's own.
func (c *conn) Fail(code int, msg string) {
	if c.opening.Load() && refusable(code) {
		_, device := c.Session()
		c.refused(code, device, msg)
		return
	}
	c.fail(code, msg)
}
