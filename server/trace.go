package server

import (
	"net"
	"sync"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// Fault location on the gateway (docs/operations.md, "Finding one
// device's trouble"):
//
//   - per-device tracing (internal/trace): POST /api/v1/trace starts a
//     trace here and sends it to every other member by a cluster message;
//     while it lasts the gateway logs that device's HELLO, takeover,
//     WELCOME (resumed or not, with the shard, canary rule and epoch that
//     placement chose), inbound frame headers (type, flags, seq, size;
//     never the payload), kicks and the close with its reason. Off, the
//     frame path pays one atomic load per frame (trace.Table.Any);
//   - a bounded ring of recent disconnects (GET /api/v1/disconnects).

// Disconnect is one device connection that ended, as the gateway keeps it
// in its ring of recent disconnects.
type Disconnect struct {
	Device string    `json:"device"`
	Remote string    `json:"remote,omitempty"`
	Reason string    `json:"reason"` // switchyard_disconnects_total's reason label
	At     time.Time `json:"at"`
	// Seconds is how long the connection lasted, from accept to close.
	Seconds float64 `json:"seconds"`
	Gateway string  `json:"gateway"`
	// addr is the connection's address when Remote is not set yet: it is
	// formatted when the ring is read, not at every close (recent).
	addr net.Addr
}

// disconnectRing keeps the last len(buf) disconnects; the oldest is
// overwritten. One lock taken once per close: closes are far rarer than
// frames.
type disconnectRing struct {
	mu   sync.Mutex
	buf  []Disconnect
	next int  // where the next one goes
	full bool // buf has wrapped
}

func newDisconnectRing(n int) *disconnectRing { return &disconnectRing{buf: make([]Disconnect, n)} }

func (r *disconnectRing) add(d Disconnect) {
	r.mu.Lock()
	r.buf[r.next] = d
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// recent returns up to limit disconnects, newest first, of device (all
// devices when device is "").
func (r *disconnectRing) recent(device string, limit int) []Disconnect {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	out := []Disconnect{}
	for i := 1; i <= n && len(out) < limit; i++ {
		d := r.buf[(r.next-i+len(r.buf))%len(r.buf)]
		if device == "" || d.Device == device {
			d.format()
			out = append(out, d)
		}
	}
	return out
}

// noteDisconnect records the close of c, whose session's device is
// device, in the ring, and traces it. The caller holds pmu.
func (c *conn) noteDisconnect(device, reason string) {
	g := c.g
	now := time.Now()
	d := Disconnect{Device: device, Remote: c.proxyRemote(), Reason: reason, At: now.UTC(),
		Seconds: float64(now.UnixNano()-c.acceptNs) / 1e9, Gateway: g.cfg.Node}
	if d.Remote == "" {
		d.addr = c.nc.RemoteAddr() // formatted when read: a string per close is garbage at every handshake's end
	}
	g.disconnects.add(d)
	if id, ok := g.trace.Lookup(device); ok {
		d.format()
		g.log.Info("trace: connection closed", "trace_id", id, "device", device, "reason", reason,
			"remote", d.Remote, "seconds", d.Seconds)
	}
}

// format sets Remote from addr.
func (d *Disconnect) format() {
	if d.Remote == "" && d.addr != nil {
		d.Remote = d.addr.String()
	}
	d.addr = nil
}

// traceFrame logs the header of an inbound frame of a traced device.
// The caller holds pmu.
func (c *conn) traceFrame(f *protocol.Frame) {
	if c.sess == nil {
		return // before HELLO: the device is not known yet
	}
	if id, ok := c.g.trace.Lookup(c.sess.device); ok {
		c.g.log.Info("trace: frame in", "trace_id", id, "device", c.sess.device, "type", f.Type.String(),
			"flags", uint8(f.Flags), "seq", f.Seq, "size", protocol.FrameSize(len(f.Payload)))
	}
}

// traceOut logs the header of a frame queued for a traced device. Any
// goroutine may queue frames, so the device is read only once the
// connection is ready: c.sess is set before ready is stored and never
// changes after, so the atomic load orders the read. WELCOME (queued
// before ready) is traced by openDone; an ERROR before ready, by the
// refusal.
func (c *conn) traceOut(t protocol.Type, flags protocol.Flags, seq uint32, n int) {
	if !c.ready.Load() || c.sess == nil {
		return
	}
	if id, ok := c.g.trace.Lookup(c.sess.device); ok {
		c.g.log.Info("trace: frame out", "trace_id", id, "device", c.sess.device, "type", t.String(),
			"flags", uint8(flags), "seq", seq, "size", protocol.FrameSize(n))
	}
}

// traceEvent logs a connection event of device when it is traced.
func (g *Gateway) traceEvent(device, msg string, args ...any) {
	if id, ok := g.trace.Lookup(device); ok {
		g.log.Info("trace: "+msg, append([]any{"trace_id", id, "device", device}, args...)...)
	}
}
