package server

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/switchyard-gw/switchyard/internal/timewheel"
	"github.com/switchyard-gw/switchyard/protocol"
	"github.com/switchyard-gw/switchyard/server/remote"
	"golang.org/x/sys/unix"
)

// conn is one device connection. It is small on purpose: a million of them
// live in one gateway. It doubles as the netpoll connection's context, so
// the handler finds it with a type assertion and no allocation.
//
// Ownership: the fields under "handler" are touched only by the netpoll
// handler goroutine (netpoll runs one OnRequest per connection at a time),
// and by the close callback, which netpoll runs after the handler finished.
// The fields under "wmu" may be touched by any goroutine holding wmu.
type conn struct {
	context.Context
	g  *Gateway
	nc netpoll.Connection
	fd int

	dl       timewheel.Entry // handshake, idle, GOAWAY or linger deadline
	acceptNs int64           // time.Now at accept, for the handshake histogram
	lastRecv atomic.Int64    // wheel tick of the last frame received
	goaway   atomic.Bool     // GOAWAY sent; dl is the close deadline
	opening  atomic.Bool     // HELLO passed, waiting for the backend to bind the session
	ready    atomic.Bool     // handshake done
	st       atomic.Uint32   // connState, for switchyard_connections_by_state (enter)
	released atomic.Bool     // closed; the handler state is to be released (releaseIfIdle)
	waiting  atomic.Bool     // counted in the handshake backlog (shed.go)

	// pmu serializes frame handling: the handler holds it for a batch; the
	// shard side takes it (remote.Device Lock) to send WELCOME and replay
	// the frames that arrived while the backend was binding the session
	// (Opened), and to start and end a move.
	pmu sync.Mutex

	// bind is the shard side's state of the session (the link, the epoch,
	// the move), opaque here: set by the handshake with backend shards,
	// nil with the embedded echo.
	bind *remote.Binding

	// proxy is the PROXY protocol state (proxy.go): set in onPrepare when
	// the connection owes a header (never changed after), nil otherwise.
	proxy *proxyState
	// tls is the connection's TLS (tls.go); nil on a plain listener.
	tls *tlsConn

	// handler (under pmu)
	sess        *session
	resumeTried bool    // HELLO carried a resume token, until the session is open
	pending     *[]byte // frames received while opening, replayed by Opened
	partial     *[]byte // the start of a frame that has not fully arrived
	rl          rateLimiter
	ackPending  uint32 // highest upstream reliable seq accepted, to ACK at flush
	ackSent     uint32
	releaseDone bool // the close was handled (releaseIfIdle): nothing may be held again
	readOnce    bool // the handler ran once (shed.go: a connection without a whole HELLO stops waiting)

	// wmu
	wmu       sync.Mutex
	out       *[]byte // bytes the socket has not taken yet; nil when none
	closing   bool    // last frame queued; nothing more is written
	closed    bool    // netpoll closed the fd; never touch it again
	inBacklog bool
	ending    atomic.Bool          // closing || closed (setClosing, setClosed): read without wmu (isClosing)
	reason    string               // why the gateway closed the connection; "" = the peer did
	sent      [nHotKinds]sentCount // frames of the hot kinds queued since the last count (countSentLocked)
}

// onPrepare runs on the poller for each accepted connection: admission,
// close callback, handshake deadline.
func (g *Gateway) onPrepare(nc netpoll.Connection) context.Context {
	c := &conn{Context: context.Background(), g: g, nc: nc, acceptNs: time.Now().UnixNano()}
	c.dl.Owner = c
	if f, ok := nc.(interface{ Fd() int }); ok {
		c.fd = f.Fd()
	}
	if g.tls != nil {
		c.tls = newTLSConn(c, g.tls)
	}
	nc.AddCloseCallback(c.onClosed)
	g.metrics.conns.Add(1)
	g.metrics.connStates[stHandshake].Add(1)
	g.metrics.accepted.Inc()
	withData, gone := c.arrived() // the accept queue's delay (shed.go)
	switch {
	case gone: // its device gave up while it waited in the accept queue
		g.metrics.handshakesAbandoned.Inc()
		g.metrics.handshakeResult(handshakeAbandoned)
	case g.draining.Load():
		g.metrics.rejectDraining.Inc()
		c.refuse("gateway draining")
	case g.metrics.conns.Load() > g.live.Load().maxConns:
		g.metrics.rejectMaxConns.Inc()
		c.refuse("too many connections")
	case !g.acceptLimit.allow(g.wheel.Now()):
		g.metrics.rejectAcceptRate.Inc()
		g.metrics.rateLimitAccept.Inc()
		c.refuse("accept rate exceeded")
	case !c.proxyAdmit(): // an untrusted source with PROXY protocol on: closed (proxy.go)
	case c.penalized(): // a source that flooded (penalty.go); with PROXY on, checked after the header
	default:
		if retryMS, shed := g.shedding(c.acceptNs); shed {
			g.metrics.rejectOverload.Inc()
			c.refuseRetry("gateway overloaded", retryMS)
			break
		}
		if withData {
			c.startWaiting() // the handshake backlog (shed.go)
		}
		g.wheel.Schedule(&c.dl, g.handshakeTimeout(withData))
		return c
	}
	c.closeRefused()
	return c
}

// closeRefused closes a connection refused at accept, here, inside
// onPrepare: netpoll then never registers it (it checks after OnPrepare
// returns). Closing it from anywhere else (the wheel) could race that
// registration and leave netpoll registering a closed connection: a nil
// dereference in netpoll that took gateways down during a reconnect storm
// (docs/scale.md). Its ERROR, if any, went out with one write (a new
// socket's buffer takes it); what the device sent is read away first, so
// that the close sends FIN, not the RST that unread data would cause and
// that could destroy the ERROR at the device before it was read.
func (c *conn) closeRefused() {
	if c.fd > 0 {
		var scratch [512]byte
		for range 32 { // a HELLO is at most 4 KB; a flood is not ours to read
			n, _, err := unix.Recvfrom(c.fd, scratch[:], unix.MSG_DONTWAIT)
			if n <= 0 || err != nil {
				break
			}
		}
	}
	c.nc.Close()
}

// onClosed is the netpoll close callback. It runs after the handler finished
// and before netpoll closes the fd, on the poller or on whichever goroutine
// called nc.Close (possibly a link reader inside Opened, holding pmu).
func (c *conn) onClosed(netpoll.Connection) error {
	g := c.g
	c.wmu.Lock()
	c.setClosed()
	c.releaseOutLocked()
	if c.reason == "" {
		c.reason = reasonPeer
		if g.forcing.Load() {
			c.reason = reasonShutdown
		}
	}
	reason := c.reason // kept for releaseIfIdle's record of the disconnect
	c.countSentLocked()
	c.wmu.Unlock()
	if c.tls != nil {
		c.tls.close()
	}
	g.wheel.Cancel(&c.dl)
	g.metrics.disconnect(reason)
	g.metrics.conns.Add(-1)
	c.enter(stClosed)
	c.released.Store(true)
	c.releaseIfIdle()
	return nil
}

// releaseIfIdle ends the session binding and frees the handler's buffers
// once the connection is closed, by whoever holds pmu when both are true.
// The close callback cannot simply wait for pmu: a link reader replaying
// held frames (Opened) holds it, and may itself be the goroutine whose
// nc.Close ran the callback. So the callback marks the connection
// released and tries; every pmu holder other than the netpoll handler
// (which never runs beside the callback) tries again after it unlocks
// (unlockHandler). The first to get pmu with released set does it, once.
func (c *conn) releaseIfIdle() {
	if !c.released.Load() || !c.pmu.TryLock() {
		return
	}
	defer c.pmu.Unlock()
	if !c.released.CompareAndSwap(true, false) {
		return
	}
	c.releaseDone = true
	if c.sess != nil {
		c.wmu.Lock()
		reason := c.reason
		c.wmu.Unlock()
		c.noteDisconnect(c.sess.device, reason)
		c.g.backend.Closed(c)
		c.g.sessions.detach(c.sess, c)
	}
	c.dropPartial()
	c.dropPending()
}

// unlockHandler releases pmu taken outside the netpoll handler, then does
// what a close callback that ran meanwhile left to it.
func (c *conn) unlockHandler() {
	c.pmu.Unlock()
	c.releaseIfIdle()
}

// Expire implements timewheel.Expirer: the one deadline of a connection.
func (c *conn) Expire(*timewheel.Entry) {
	g := c.g
	c.wmu.Lock()
	closing, closed := c.closing, c.closed
	c.wmu.Unlock()
	switch {
	case closed:
	case closing:
		c.nc.Close() // linger over
	case c.goaway.Load():
		c.shut(reasonDrain)
	case c.owesProxy():
		c.proxyRefuse(proxyTimeout, errProxyTimeout)
	case c.opening.Load():
		c.fail(protocol.CodeUnavailable, "backend did not answer in time")
	case !c.ready.Load():
		if c.tls != nil && !c.tls.established.Load() {
			c.tls.markTimeout()
		}
		c.fail(protocol.CodeTimeout, "handshake timeout")
	default:
		if at := g.idleAt(c.lastRecv.Load()); at > g.wheel.Now() {
			g.wheel.ScheduleAt(&c.dl, at)
			return
		}
		c.fail(protocol.CodeTimeout, "idle timeout")
	}
}

// idleAt is the tick of the idle deadline of a connection last heard from
// at tick from: idleTicks later, rounded up to a whole idleQuantum (a
// second, or a sixteenth of the idle timeout when that is shorter), so
// that all the deadlines falling due within one quantum wake the wheel
// once. The deadline is lazy (re-armed when it expires, not at every
// frame), so each session's expires every 2 to 3 heartbeats: one wheel
// wake-up each, 25 a second for 18,500 sessions at a 300 s heartbeat,
// when nothing else is due (docs/benchmarks.md "Idle wake-ups").
func (g *Gateway) idleAt(from int64) int64 {
	at, q := from+g.idleTicks, g.idleQuantum
	return (at + q - 1) / q * q
}

// fail sends ERROR code and ends the connection once the socket took it
// (at most CloseLinger later): lingerClose. Code 429 is not final: use
// rateLimited.
func (c *conn) fail(code int, msg string) {
	c.wmu.Lock()
	if !c.writable() {
		c.wmu.Unlock()
		return
	}
	c.appendLocked(protocol.TypeError, 0, 0, errorPayload(code, msg))
	c.setClosing()
	ready := c.ready.Load()
	c.reason = reasonFor(code, ready)
	why := c.flushLocked()
	pending := c.out != nil
	c.wmu.Unlock()
	c.g.metrics.errorSent(code)
	if !ready {
		c.g.metrics.handshakeResult(strconv.Itoa(code))
	}
	switch {
	case why != "":
		c.shut(why)
	case pending:
		c.g.wheel.Schedule(&c.dl, c.g.cfg.CloseLinger)
	default:
		c.lingerClose()
	}
}

// lingerClose ends a closing connection whose last bytes (its ERROR) the
// socket took: it half-closes, so that the FIN follows them, and leaves
// the connection to close when the device closes its end (netpoll reads
// the EOF; input meanwhile is thrown away, see onRequest) or CloseLinger
// later. Closing at once would reset the connection whenever input sat
// unread in the kernel, a device still sending or bytes the poller had
// not read yet, and a reset makes the device's kernel drop what it has
// not read: the ERROR it was sent last (CI, TestSlowConsumerGetsError).
func (c *conn) lingerClose() {
	c.wmu.Lock()
	var err error = unix.EBADF
	if !c.closed { // else netpoll may have closed the fd (write.go)
		err = unix.Shutdown(c.fd, unix.SHUT_WR)
	}
	c.wmu.Unlock()
	if err != nil {
		c.nc.Close()
		return
	}
	c.g.wheel.Schedule(&c.dl, c.g.cfg.CloseLinger)
}

// refuse queues ERROR 503 for a connection the gateway will not take;
// the caller closes it (closeRefused, inside onPrepare).
func (c *conn) refuse(msg string) { c.refuseRetry(msg, 0) }

// refuseRetry is refuse with a retry hint: retry_ms in the ERROR, when
// retryMS > 0.
func (c *conn) refuseRetry(msg string, retryMS int) {
	c.g.refusals.note(protocol.CodeUnavailable, "", c.remote(), msg)
	c.wmu.Lock()
	p, _ := protocol.Marshal(&protocol.ErrorMsg{Code: protocol.CodeUnavailable, Message: msg, RetryMS: retryMS})
	c.appendLocked(protocol.TypeError, 0, 0, p)
	c.setClosing()
	c.reason = reasonUnavailable
	_ = c.flushLocked()
	c.wmu.Unlock()
	c.g.metrics.errorSent(protocol.CodeUnavailable)
}

// shut closes the connection for reason (the first reason given wins). A
// slow consumer with bytes still queued (its ERROR last, slowLocked) is
// closed by the wheel instead: by retryBacklog once they are written, or
// at the linger deadline.
func (c *conn) shut(reason string) {
	c.wmu.Lock()
	if c.reason == "" {
		c.reason = reason
	}
	c.setClosing()
	linger := reason == reasonSlowConsumer && c.out != nil && !c.closed
	c.wmu.Unlock()
	if linger {
		c.g.wheel.Schedule(&c.dl, c.g.cfg.CloseLinger)
		return
	}
	c.nc.Close()
}

// errorPayload encodes an ERROR map. Errors are rare (429 at most once a
// second per device), so it is not worth a cache.
func errorPayload(code int, msg string) []byte {
	p, _ := protocol.Marshal(&protocol.ErrorMsg{Code: code, Message: msg})
	return p
}

// failErr fails with the code and message of a protocol error.
func (c *conn) failErr(err error) {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		c.fail(pe.Code, pe.Msg)
		return
	}
	c.fail(protocol.CodeInternal, "internal error")
}

// sentCount is a connection's count of the frames of one kind it queued
// since its last flush, and their bytes; 32 bits each keep conn small
// (a flush empties them long before they wrap).
type sentCount struct{ frames, bytes uint32 }

// enter moves the connection to state st and keeps
// switchyard_connections_by_state: a connection only moves forward, and
// a closed one stays closed (Opened may complete a handshake after the
// close began).
func (c *conn) enter(st connState) {
	m := c.g.metrics
	for {
		old := connState(c.st.Load())
		if old >= st {
			return
		}
		if c.st.CompareAndSwap(uint32(old), uint32(st)) {
			if st >= stReady {
				c.stopWaiting(true) // WELCOME or closed: its handshake is done
			}
			m.connStates[old].Add(-1)
			if st != stClosed {
				m.connStates[st].Add(1)
			}
			return
		}
	}
}
