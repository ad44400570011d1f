package server

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Shedding a reconnect storm.
//
// When a gateway dies, its devices all come back at once. A gateway that
// accepts more connections than it can handshake before the devices give
// up makes things worse: each connection waits (for the handler, then for
// its shard to open the session) until the device or the gateway gives up
// on it (408), and each retry adds to the queue. So the gateway estimates
// how long a new connection would wait, and past ShedLag it refuses new
// connections at once, cheaply, with 503 and a hint of when to come back:
//
//	accept ──▶ onPrepare: expected wait > shed_lag? ──yes──▶ ERROR 503 {retry_ms}, close
//	                        │ no                              (switchyard_connections_rejected_total{reason="overload"})
//	                        ▼
//	           waiting++ ── first read, HELLO whole ──▶ opening ──▶ WELCOME or close: waiting--, departed++
//	                        first read, HELLO not whole: waiting-- (it waits on the device, not on us)
//
// Before accept, a connection waits in the kernel's accept queue, which
// the gateway cannot see directly; but TCP_INFO tells, at accept, how long
// ago its first bytes arrived (tcpi_last_data_recv): the queue's delay
// right now, kept as a moving average (queueAge) for the operator. The
// expected wait the gateway sheds on is what follows accept, the wait for
// the handler and the shard: Little's law, the connections waiting on the gateway divided by the
// rate at which they leave (handshakes finished per second, measured over
// the last quarter second and smoothed). Only a connection whose first
// bytes came with it counts (with TCP_DEFER_ACCEPT the kernel hands a
// connection over once data arrived, so that is nearly every real
// device), and one whose first read holds no whole HELLO stops counting:
// slow or silent devices wait on themselves and cannot make the gateway
// shed everyone else.
//
// The estimate reacts at once: a storm that starts from idle finds a
// departure rate near zero, so the gateway lets in shedMinWaiting and
// sheds the rest until the first handshakes finish and the rate is known
// (a quarter second); then it admits what it can finish within ShedLag.
// The hint is the expected wait, clamped to 1–10 s: the client waits a
// random time between half the hint and all of it, so the refused devices
// come back spread over about the time the gateway needs for what it
// accepted.

// shedMinWaiting is how many connections may wait however slow the
// gateway looks: the estimate of an idle gateway is no estimate, and an
// ordinary burst (PROTOCOL.md: 200 connections at once from one address
// pass untouched) must not be shed. It is also the floor of the rate
// (shedMinWaiting per shed_lag): about a tenth of what one core
// handshakes in a second (docs/benchmarks.md).
const shedMinWaiting = 1024

// Bounds of the retry hint, and how often the departure rate is sampled.
const (
	minShedRetry = time.Second
	maxShedRetry = 10 * time.Second // the client's own backoff ceiling
	shedSample   = 250 * time.Millisecond
)

// shedState is the gateway's estimate of its handshake backlog.
type shedState struct {
	waiting  atomic.Int64 // connections waiting on the gateway (see above)
	departed atomic.Int64 // of those, handshakes finished (WELCOME or closed)

	// queueAge is the moving average (weight 1/8) of how long the
	// connections just accepted had been in the accept queue with their
	// first bytes (ns): switchyard_accept_queue_seconds. It is shown, not
	// shed on: shedding on it locked gateways into refusing nearly every
	// device of a 100,000-device storm on the 2-core test box (their
	// retries kept the queues full, so every accepted connection had
	// waited; docs/scale.md "Reconnect storms").
	queueAge atomic.Int64

	mu     sync.Mutex   // one sampler at a time (TryLock: never waits)
	at     atomic.Int64 // ns, start of the current sample
	from   int64        // departed at its start (under mu)
	rateBm atomic.Uint64
}

// rate is the smoothed departure rate, per second.
func (s *shedState) rate() float64 { return math.Float64frombits(s.rateBm.Load()) }

// sample folds the departures since the last sample into the rate, at
// most once per shedSample; whoever comes first does it.
func (s *shedState) sample(now int64) {
	at := s.at.Load()
	if now-at < int64(shedSample) || !s.mu.TryLock() {
		return
	}
	defer s.mu.Unlock()
	if at = s.at.Load(); now-at < int64(shedSample) {
		return
	}
	d := s.departed.Load()
	r := float64(d-s.from) / (float64(now-at) / 1e9)
	if old := s.rate(); old > 0 && at > 0 {
		r = (r + old) / 2
	}
	s.rateBm.Store(math.Float64bits(r))
	s.from = d
	s.at.Store(now)
}

// backlog is the expected wait of a new connection once accepted: the
// waiting ones over the departure rate (never under shedMinWaiting /
// shed_lag per second).
func (s *shedState) backlog(lag time.Duration) time.Duration {
	floor := shedMinWaiting / lag.Seconds()
	return time.Duration(float64(s.waiting.Load()) / max(s.rate(), floor) * 1e9)
}

// wait is the expected wait of a new connection once accepted.
func (s *shedState) wait(lag time.Duration) time.Duration { return s.backlog(lag) }

// noteQueueAge folds one accepted connection's time in the accept queue
// into the average. Concurrent updates may lose one another's sample.
func (s *shedState) noteQueueAge(age time.Duration) {
	old := s.queueAge.Load()
	s.queueAge.Store(old + (int64(age)-old)/8)
}

// shedding reports whether a connection accepted at now (ns) should be
// refused because the gateway would not finish its handshake within
// shed_lag: more than shedMinWaiting wait on it and they would take that
// long. The accept queue's delay is not part of it (see queueAge).
func (g *Gateway) shedding(now int64) bool {
	lag := time.Duration(g.live.Load().shedLag)
	if lag <= 0 {
		return false
	}
	g.shed.sample(now)
	return g.shed.waiting.Load() >= shedMinWaiting && g.shed.backlog(lag) > lag
}

// shedRetry is the retry_ms a shed connection is given: the expected
// wait (the device comes back between half of it and all of it).
func (g *Gateway) shedRetry() int {
	d := g.shed.wait(time.Duration(g.live.Load().shedLag))
	return int(min(max(d, minShedRetry), maxShedRetry) / time.Millisecond)
}

// arrived is called at accept, before admission: a connection whose first
// bytes came with it adds its time in the accept queue to the average,
// and reports true (it will count as waiting if admitted).
func (c *conn) arrived() bool {
	age, data := queued(c.fd)
	if data {
		c.g.shed.noteQueueAge(age)
	}
	return data
}

// startWaiting counts an admitted connection as waiting on the gateway
// (its first bytes came with it: arrived).
func (c *conn) startWaiting() {
	c.waiting.Store(true)
	c.g.shed.waiting.Add(1)
}

// stopWaiting ends c's wait: finished is a handshake done (WELCOME, or a
// close), which counts toward the departure rate; otherwise c waits on
// its device now.
func (c *conn) stopWaiting(finished bool) {
	if c.waiting.CompareAndSwap(true, false) {
		c.g.shed.waiting.Add(-1)
		if finished {
			c.g.shed.departed.Add(1)
		}
	}
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

// tcpCloseWait is TCP_CLOSE_WAIT, the state of a socket whose peer has
// closed (linux/tcp_states.h).
const tcpCloseWait = 8

// queued reads a just-accepted socket's TCP_INFO (one getsockopt, into a
// stack buffer: no allocation): whether the device's first bytes came
// with it, and how long ago the last of them arrived, which is how long
// they waited in the accept queue. A connection its device already gave
// up on (it closed: CLOSE_WAIT) says nothing of the queue's delay now,
// only of the delay it gave up at, and is dropped at its HELLO anyway
// (peerClosed): it reads as no data.
func queued(fd int) (age time.Duration, data bool) {
	if fd <= 0 {
		return 0, false
	}
	var ti unix.TCPInfo
	n := uint32(unsafe.Sizeof(ti))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&ti)), uintptr(unsafe.Pointer(&n)), 0)
	if e != 0 || ti.Bytes_received == 0 || ti.State == tcpCloseWait {
		return 0, false
	}
	return time.Duration(ti.Last_data_recv) * time.Millisecond, true
}
