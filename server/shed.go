package server

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cloudwego/netpoll"
	"golang.org/x/sys/unix"

	"github.com/switchyard-gw/switchyard/internal/rawio"
)

// Shedding a reconnect storm.
//
// When a gateway dies, its devices all come back at once. A gateway that
// accepts more connections than it can handshake before the devices give
// up makes things worse: each connection waits (for the handler, then for
// its shard to open the session) until the device or the gateway gives up
// on it (408), and each retry adds to the queue. So the gateway estimates
// how long a new connection would wait, and past ShedLag it refuses new
// connections at once, cheaply, with 503 and a time to come back:
//
//	accept ──▶ onPrepare: device gone already? ──yes──▶ close (switchyard_handshakes_abandoned_total)
//	                      expected wait > shed_lag? ──yes──▶ ERROR 503 {retry_ms: the next return slot}, close
//	                        │ no                              (switchyard_connections_rejected_total{reason="overload"})
//	                        ▼
//	           waiting++ ── first read, HELLO whole ──▶ opening ──▶ WELCOME or close: waiting--, departed++
//	                        first read, HELLO not whole: waiting-- (it waits on the device, not on us)
//
// The expected wait is what follows accept, the wait for the handler and
// the shard: Little's law, the connections waiting on the gateway divided
// by the rate at which they leave (handshakes finished per second,
// measured over the last quarter second and smoothed). Only a connection
// whose first bytes came with it counts (with TCP_DEFER_ACCEPT the kernel
// hands a connection over once data arrived, so that is nearly every real
// device), and one whose first read holds no whole HELLO stops counting:
// slow or silent devices wait on themselves and cannot make the gateway
// shed everyone else.
//
// The time to come back is a return slot: the gateway keeps a schedule,
// each refusal takes the next free slot, one handshake's time (1 / the
// departure rate) after the previous one, starting where the gateway's
// own backlog ends. So N refused devices are told to come back spread
// over N / rate seconds, at the pace the gateway handshakes, instead of
// all into the same queue after the same wait. The client waits a random
// time between half the hint and all of it, on average three quarters of
// it, so the hint is 4/3 of the slot's distance.
//
// Before accept, a connection waits in the kernel's accept queue. TCP_INFO
// tells, at accept, how long ago its HELLO arrived (tcpi_last_data_recv),
// and on the listener how many wait in the queue (tcpi_unacked): gauges
// for the operator (switchyard_accept_queue_seconds, _length), not
// reasons to shed. Refusing the connections that waited long in a
// crowded queue was tried (docs/scale.md "Reconnect storms"): on the
// 2-core test box a refusal costs the gateway about as much as a
// handshake, the queue is served oldest first, so the gateways refused
// the whole queue, the refused devices came back behind the rest of it,
// and nearly nobody was served (2,339 of 100,000 resumed in 40 s, against
// 90,795 without it in the next run). A connection whose device already
// gave up on it (closed or reset while queued) is closed at accept
// without a word: nobody would read the answer.
//
// The estimate reacts at once: a storm that starts from idle finds a
// departure rate near zero, so the gateway lets in shedMinWaiting and
// sheds the rest until the first handshakes finish and the rate is known
// (a quarter second); then it admits what it can finish within ShedLag.

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
	maxShedRetry = time.Minute // each refusal moves the next slot one handshake later: a long storm's are told tens of seconds; no device is sent away longer
	shedSample   = 250 * time.Millisecond
)

// shedState is the gateway's estimate of its handshake backlog.
type shedState struct {
	waiting  atomic.Int64 // connections waiting on the gateway (see above)
	departed atomic.Int64 // of those, handshakes finished (WELCOME or closed)

	// queueAge is the moving average (weight 1/8) of how long the
	// connections just accepted had been in the accept queue with their
	// first bytes (ns): switchyard_accept_queue_seconds. Shown, not shed
	// on (see above).
	queueAge atomic.Int64

	// slot is the last return slot handed out (ns; see above).
	slot atomic.Int64

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

// acceptBudget is how many queued connections the listener may accept
// in one go (netpoll's WithAcceptBatch, called by the poller once per
// readiness event of the listener): as many as the gateway finishes
// within an eighth of lag at its measured pace, less what already waits
// on it; at least one, as upstream netpoll accepts, at most netpoll's
// MaxAcceptBatch. Without shedding (lag < 0) there is no pace to go by:
// one.
//
// One accept per event left the kernel's accept queue to drain one
// connection per pass of the poller, whatever else that pass had to do (a
// storm's thousands of resets). Accepting the whole queue at once moved
// the wait from the kernel, where no timer runs, to the gateway, where
// the handshake timeout does: on an overloaded box that timed out many
// more handshakes (docs/scale.md "Accepting what the gateway can take
// on"). So the budget goes by the measured pace alone, not by pace's
// floor, and covers a short stretch of it: a batch need only spare the
// poller its passes, and the pace measured before a gateway's neighbours
// die is more than it manages after. A gateway that finishes 14,000
// handshakes a second takes 256 at once, one that finishes 170 takes
// 21, and an idle one (nothing measured yet) one per event until its
// first handshakes have been measured, a quarter second later.
func (s *shedState) acceptBudget(lag time.Duration) int {
	if lag <= 0 {
		return 1
	}
	room := s.rate()*lag.Seconds()/acceptShare - float64(s.waiting.Load())
	return int(min(max(room, 1), netpoll.MaxAcceptBatch))
}

// acceptShare: the listener's batches cover 1/acceptShare of shed_lag.
const acceptShare = 8

// backlog is the expected wait of a new connection once accepted: the
// waiting ones over the departure rate (pace).
func (s *shedState) backlog(lag time.Duration) time.Duration {
	return time.Duration(float64(s.waiting.Load()) / s.pace(lag) * 1e9)
}

// wait is the expected wait of a new connection once accepted.
func (s *shedState) wait(lag time.Duration) time.Duration { return s.backlog(lag) }

// pace is the departure rate the estimates use: the measured one, never
// under shedMinWaiting per shed_lag.
func (s *shedState) pace(lag time.Duration) float64 {
	return max(s.rate(), shedMinWaiting/lag.Seconds())
}

// returnSlot hands a refused connection the next free return slot, one
// handshake's time after the previous one and never before the gateway
// is through what waits on it, and reports how far from now it is.
func (s *shedState) returnSlot(now int64, lag time.Duration) time.Duration {
	step := int64(1e9 / s.pace(lag))
	for {
		last := s.slot.Load()
		next := max(last, now+int64(s.backlog(lag))) + step
		if s.slot.CompareAndSwap(last, next) {
			return time.Duration(next - now)
		}
	}
}

// noteQueueAge folds one accepted connection's time in the accept queue
// into the average. Concurrent updates may lose one another's sample.
func (s *shedState) noteQueueAge(age time.Duration) {
	old := s.queueAge.Load()
	s.queueAge.Store(old + (int64(age)-old)/8)
}

// shedding reports whether a connection accepted at now (ns) should be
// refused because the gateway would not finish its handshake within
// shed_lag (behind), and if so its retry_ms: 4/3 of the distance to its
// return slot, between minShedRetry and maxShedRetry.
func (g *Gateway) shedding(now int64) (retryMS int, shed bool) {
	lag := time.Duration(g.live.Load().shedLag)
	if lag <= 0 {
		return 0, false
	}
	g.shed.sample(now)
	if !g.shed.behind(lag) {
		return 0, false
	}
	d := g.shed.returnSlot(now, lag) * 4 / 3
	return int(min(max(d, minShedRetry), maxShedRetry) / time.Millisecond), true
}

// behind reports whether the gateway's own backlog is past lag: more than
// shedMinWaiting wait on it and they would take that long.
func (s *shedState) behind(lag time.Duration) bool {
	return s.waiting.Load() >= shedMinWaiting && s.backlog(lag) > lag
}

// arrived is called at accept, before admission. A connection whose first
// bytes came with it adds its time in the accept queue to the average and
// reports data (it will count as waiting if admitted); gone is a
// connection its device already closed.
func (c *conn) arrived() (data, gone bool) {
	age, data, gone := queued(c.fd)
	if data {
		c.g.shed.noteQueueAge(age)
	}
	return data, gone
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
// nothing before it hands it over anyway (its SYN-ACK is sent again after
// a second, and the device's answer to that completes the accept).
const deferAcceptSeconds = 1

// handshakeTimeout is how long a connection just accepted has to finish
// its handshake. PROTOCOL.md counts handshake_timeout from the device's
// connect; the gateway sees a connection only at accept, which for one
// that sent nothing comes deferAcceptSeconds after the connect when the
// listener defers accepts. So that one gets its 408 handshake_timeout
// after its connect, not a second later (a conformance probe measured
// 6.0 s against the default 5). A connection that came with data was
// accepted when its first bytes arrived: within deferAcceptSeconds of
// its connect, usually at once; its timeout runs from there.
func (g *Gateway) handshakeTimeout(withData bool) time.Duration {
	t := g.live.Load().handshakeTimeout
	if g.deferred && !withData {
		t -= deferAcceptSeconds * time.Second
	}
	return max(t, time.Millisecond) // due at the wheel's next sweep
}

// deferAccept asks the kernel to hand over a connection only once data
// arrived on it (or after deferAcceptSeconds): the gateway is woken once
// per connection, with the HELLO there. A failure (not Linux) is
// returned for the log; the gateway works without it.
func deferAccept(fd int) error {
	return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferAcceptSeconds)
}

// TCP states (linux/tcp_states.h): a socket whose peer has closed
// (CLOSE_WAIT) or reset it (CLOSE).
const (
	tcpClose     = 7
	tcpCloseWait = 8
)

// tcpInfo reads fd's TCP_INFO (one getsockopt, into the caller's stack:
// no allocation).
func tcpInfo(fd int, ti *unix.TCPInfo) bool {
	n := uint32(unsafe.Sizeof(*ti))
	return rawio.Getsockopt(fd, unix.IPPROTO_TCP, unix.TCP_INFO, unsafe.Pointer(ti), &n) == nil
}

// listenQueue is how many connections wait in the listener fd's accept
// queue: TCP_INFO of a listening socket gives it as tcpi_unacked (Linux
// tcp_get_info). 0 when it cannot tell.
func listenQueue(fd int) int {
	var ti unix.TCPInfo
	if fd <= 0 || !tcpInfo(fd, &ti) {
		return 0
	}
	return int(ti.Unacked)
}

// queued reads a just-accepted socket's TCP_INFO: whether the device's
// first bytes came with it, and how long ago the last of them arrived,
// which is how long they waited in the accept queue. A connection its
// device already gave up on (closed or reset) is gone: nobody would read
// an answer, and its age says nothing of the queue's delay now.
func queued(fd int) (age time.Duration, data, gone bool) {
	var ti unix.TCPInfo
	if fd <= 0 || !tcpInfo(fd, &ti) {
		return 0, false, false
	}
	if ti.State == tcpCloseWait || ti.State == tcpClose {
		return 0, false, true
	}
	if ti.Bytes_received == 0 {
		return 0, false, false
	}
	return time.Duration(ti.Last_data_recv) * time.Millisecond, true, false
}
