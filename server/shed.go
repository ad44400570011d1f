package server

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// Shedding a reconnect storm.
//
// When a gateway dies, its devices all come back at once. A gateway that
// accepts more connections than it can handshake before their deadline
// makes things worse: each connection waits in the handler's queue until
// the device or the gateway gives up on it (408), and each retry adds to
// the queue. So the gateway watches how far behind it is, and once it is
// too far behind it refuses new connections at once, cheaply, with 503
// and a hint of when to come back:
//
//	accept ──▶ onPrepare: behind? ──yes──▶ ERROR 503 {retry_ms}, close   (switchyard_connections_rejected_total{reason="overload"})
//	                        │ no
//	                        ▼
//	           first read: lag = now − accept ──▶ acceptLag (moving average)
//
// "Behind" is the accept-to-first-read lag of the connections whose first
// bytes (the HELLO) were already there when they were accepted: their lag
// is the gateway's own queueing, not the device's think time. With
// TCP_DEFER_ACCEPT the kernel hands a connection over only once data
// arrived (or after a second of silence), so that is nearly every real
// device; a connection that was silent at accept adds nothing to the
// average, so slow or silent devices cannot make the gateway shed
// everyone else. The gateway sheds while the average is over ShedLag and at least
// shedMinHandshaking connections are still in their handshake. The second
// condition ends the shedding by itself: refused connections add no
// samples, so the average stays where the storm left it until the
// handshakes already accepted are done, and then new ones are let in and
// bring it down.
//
// The hint is twice the lag, clamped: the client waits a random time of
// up to the hint (at least half of it), so the refused devices come back
// spread over about the time the gateway needs to work through its queue.

// shedMinHandshaking is how many handshakes in progress still count as
// "caught up" whatever the lag says.
const shedMinHandshaking = 32

// Bounds of the retry hint.
const (
	minShedRetry = time.Second
	maxShedRetry = 30 * time.Second
)

// noteAcceptLag adds one connection's accept-to-first-read lag (ns) to
// the moving average (weight 1/8). Concurrent updates may lose one
// another's sample; the average is a load signal, not a count.
func (g *Gateway) noteAcceptLag(lag int64) {
	lag = max(lag, 0)
	old := g.acceptLag.Load()
	g.acceptLag.Store(old + (lag-old)/8)
}

// shedding reports whether a new connection should be refused because
// the gateway is behind on handshakes.
func (g *Gateway) shedding() bool {
	limit := g.live.Load().shedLag
	return limit >= 0 && g.acceptLag.Load() > limit &&
		g.metrics.connStates[stHandshake].Load() > shedMinHandshaking
}

// shedRetry is the retry_ms a shed connection is given.
func (g *Gateway) shedRetry() int {
	d := time.Duration(2 * g.acceptLag.Load())
	return int(min(max(d, minShedRetry), maxShedRetry) / time.Millisecond)
}

// deferAcceptSeconds is how long the kernel holds a connection that sent
// nothing before it hands it over anyway. Short, because the handshake
// timeout (and its 408, PROTOCOL.md) starts only at accept: a silent
// connection gets its 408 about this much later than handshake_timeout
// after its connect.
const deferAcceptSeconds = 1

// deferAccept asks the kernel to hand over a connection only once data
// arrived on it (or after deferAcceptSeconds): the gateway is woken once
// per connection, with the HELLO there. A failure (not Linux) is
// returned for the log; the gateway works without it.
func deferAccept(fd int) error {
	return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferAcceptSeconds)
}

// dataWaiting reports whether bytes are waiting on the socket: at accept,
// whether the device's first bytes came with the connection, so that its
// accept lag measures the gateway (one recv with MSG_PEEK per accept).
func dataWaiting(fd int) bool {
	if fd <= 0 {
		return false
	}
	var b [1]byte
	for {
		n, _, err := unix.Recvfrom(fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if !errors.Is(err, unix.EINTR) {
			return err == nil && n > 0
		}
	}
}
