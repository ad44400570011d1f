package main

import (
	"bytes"
	"container/heap"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/internal/rawio"
	"github.com/switchyard-gw/switchyard/protocol"
	"golang.org/x/sys/unix"
)

// The engine: a few worker goroutines, each owning many non-blocking
// sockets through its own epoll instance and a timer heap. No goroutine
// per session.

// payload layout of every DATA sent: magic, scheduled (or actual, closed
// loop) send time in ns since base, the session's counter; padded to
// --payload. An echo brings it back whole.
var magic = [4]byte{'L', 'G', 'v', '1'}

const minPayload = 4 + 8 + 8

// maxBatch bounds the frames one session writes at once after falling behind.
const maxBatch = 64

// engine runs sessions [first, first+count) of a load.
type engine struct {
	cfg    *config
	base   time.Time
	dst    []unix.SockaddrInet4
	src    sources
	agg    *agg
	first  int
	count  int
	endAt  int64 // ns since base: stop sending
	secret []byte
	inc    *os.File // --incidents, or nil
	// stop, set on SIGINT or SIGTERM, ends the load early: the workers
	// drain (--drain) and the run reports as at its planned end.
	stop atomic.Bool
	// storms counts SIGUSR1s: each makes every worker cut all its
	// connections at once (a reset, as when a gateway or the network
	// dies) and reconnect them with the client's backoff: a reconnect
	// storm (tools/scale --storm-after).
	storms atomic.Int32
	// kick is an eventfd in every worker's epoll set (edge-triggered,
	// never read): writing it wakes them all to see stop or storms at
	// once, so an idle worker need not wake on its own to look. It is
	// open while run runs (0 otherwise); kickMu keeps wake from writing
	// to it as it closes.
	kickMu sync.Mutex
	kick   int
}

func (e *engine) now() int64 { return int64(time.Since(e.base)) }

// onGrid is heartbeat time at (ns since base) rounded up to the
// wall-clock grid of --heartbeat-grid, whose step is at most a quarter
// of the heartbeat hb: all processes' PINGs due in one step go out at
// its end together. A gateway with many devices gets its PINGs close
// together and handles them in one wake-up; the scale test's gateways
// have a few thousand sessions each, one wake-up and about three
// context switches per PING without it (docs/scale.md).
func (e *engine) onGrid(at, hb int64) int64 {
	g := min(int64(e.cfg.HBGrid), hb/4)
	if g <= 0 {
		return at
	}
	wall := e.base.UnixNano() + at
	return (wall+g-1)/g*g - e.base.UnixNano()
}

// wake makes every worker look at stop and storms now.
func (e *engine) wake() {
	e.kickMu.Lock()
	defer e.kickMu.Unlock()
	if e.kick > 0 {
		one := [8]byte{1}
		rawio.Write(e.kick, one[:])
	}
}

// maxIdleWait is the longest a worker waits for an event when no timer of
// its own is due sooner. A wake-up costs a process on a shared two-core
// box tens of microseconds of context switches (the runtime's sysmon wakes
// with it); with 53 processes of two workers each, waking every 100 ms as
// they once did cost the million-session run about a quarter of a core
// with nothing to do (docs/benchmarks.md "Idle wake-ups").
var maxIdleWait = time.Second // a variable for tests

// run starts the workers and waits for them.
func (e *engine) run() error {
	kick, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return err
	}
	e.kickMu.Lock()
	e.kick = kick
	e.kickMu.Unlock()
	defer func() {
		e.kickMu.Lock()
		unix.Close(e.kick)
		e.kick = 0
		e.kickMu.Unlock()
	}()
	nw := max(1, min(e.cfg.Workers, e.count))
	ws := make([]*worker, nw)
	for i := range ws {
		w, err := newWorker(e, i)
		if err != nil {
			for _, w := range ws[:i] {
				w.ep.close()
			}
			return err
		}
		ws[i] = w
	}
	for g := e.first; g < e.first+e.count; g++ {
		w := ws[(g-e.first)%nw]
		w.addSession(g)
	}
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); w.loop() }()
	}
	wg.Wait()
	return nil
}

const (
	stIdle = iota // not started / waiting to reconnect
	stConnecting
	stHandshaking
	stUp
)

type pending struct {
	seq uint32
	ts  int64
	ctr uint64
}

type session struct {
	g        int
	id       string
	fd       int
	state    int
	wake     int64
	rbuf     []byte
	wbuf     []byte
	dst      unix.SockaddrInet4 // own copy: Connect writes into it
	deadline int64              // connect/handshake deadline
	started  bool               // its first connect was made

	everUp  bool
	alt     int           // connections that failed or ended without GOAWAY: offset into --addr
	addrStr string        // this connection's gateway, for incidents
	goaway  bool          // this connection got GOAWAY
	errCode int           // this connection got ERROR with this code (not 429)
	retryMS int           // that ERROR's retry hint (retry_ms), 0 without
	backoff time.Duration // the ceiling of the next reconnect's random wait
	hb      int64
	resume  []byte
	lastW   int64 // last write, ns since base

	downLast uint32 // highest reliable downstream seq received in order
	ackOwed  bool
	upSeq    uint32 // last reliable upstream seq assigned
	upAcked  uint32
	pend     []pending // reliable upstream DATA not acknowledged
	// ackWait is when the oldest unacknowledged frame started waiting
	// (its send, the last ACK that made progress, or the last resend).
	ackWait int64

	sched   schedule
	schedOK bool
	next    int64   // open loop: index of the next frame
	fifo    []int64 // send times of DATA awaiting a reply
	ctr     uint64  // last counter sent

	up, down seqCheck
	resynced bool   // up was resynced (a new session or a state reset)
	shard    string // counter backend: the shard named by the last reply
}

type timer struct {
	at int64
	s  *session
}

type timerHeap []timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

type worker struct {
	e        *engine
	idx      int
	ep       *epollWaiter // the worker's epoll instance (ep.fd), which it owns
	byFD     map[int]*session
	storms   int32 // e.storms already acted on
	all      []*session
	timers   timerHeap
	st       *Stats
	scratch  []byte
	pay      []byte
	draining bool
	upN      int64
	inc      incidentLog
	// endAt is when the worker stops sending: the run's end, or later, as
	// --duration promises load time after the last session started, and a
	// starved worker starts its sessions after their schedule.
	endAt int64
}

func newWorker(e *engine, idx int) (*worker, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	ep, err := newEpollWaiter(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.EpollCtl(fd, unix.EPOLL_CTL_ADD, e.kick, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(e.kick)}); err != nil {
		ep.close()
		return nil, err
	}
	return &worker{e: e, idx: idx, ep: ep, byFD: map[int]*session{}, st: newStats(), endAt: e.endAt, inc: incidentLog{f: e.inc},
		scratch: make([]byte, 64*1024), pay: make([]byte, max(e.cfg.Payload, minPayload))}, nil
}

func (w *worker) addSession(g int) {
	s := &session{g: g, fd: -1, id: w.e.cfg.IDPrefix + strconv.Itoa(g),
		dst: w.e.dst[g%len(w.e.dst)], up: newSeqCheck(1), down: newSeqCheck(1)}
	w.all = append(w.all, s)
	w.setWake(s, startAt(g, w.e.cfg.Ramp)+int64(20*time.Millisecond))
}

func (w *worker) setWake(s *session, at int64) {
	s.wake = at
	heap.Push(&w.timers, timer{at, s})
}

// loop runs the worker's sessions until the end of the run and its drain.
func (w *worker) loop() {
	defer w.ep.close()
	events := make([]unix.EpollEvent, 256)
	lastFlush := w.e.now()
	var drainEnd, lastQuiet int64
	for {
		now := w.e.now()
		for len(w.timers) > 0 && w.timers[0].at <= now {
			t := heap.Pop(&w.timers).(timer)
			if t.s.wake == t.at {
				t.s.wake = -1
				w.tick(t.s, now)
			}
		}
		if n := w.e.storms.Load(); n != w.storms {
			w.storms = n
			if !w.draining {
				w.storm(now)
			}
		}
		if !w.draining && (now >= w.endAt || w.e.stop.Load()) {
			w.draining = true
			drainEnd = now + int64(w.e.cfg.Drain)
		}
		if w.draining && now >= drainEnd {
			break
		}
		if w.draining && now-lastQuiet >= int64(10*time.Millisecond) {
			lastQuiet = now
			if w.quiet() {
				break
			}
		}
		if now-lastFlush >= int64(200*time.Millisecond) {
			w.flushStats()
			lastFlush = now
		}
		// A session's earlier wake-ups stay in the heap when it sets a
		// new one (the handshake deadline once it is up); drop them from
		// the top so that they do not end the wait for nothing.
		for len(w.timers) > 0 && w.timers[0].s.wake != w.timers[0].at {
			heap.Pop(&w.timers)
		}
		next := now + int64(maxIdleWait)
		if len(w.timers) > 0 {
			next = min(next, w.timers[0].at)
		}
		if !w.draining {
			next = min(next, w.endAt)
		} else {
			next = min(next, now+int64(20*time.Millisecond))
		}
		// Rounded up to whole milliseconds, as epoll_wait once took it.
		timeout := time.Duration(max(0, next-now) + int64(time.Millisecond) - 1).Truncate(time.Millisecond)
		n, err := w.ep.wait(events, timeout)
		if err != nil {
			w.st.err("epoll")
			break
		}
		for _, ev := range events[:max(n, 0)] {
			if s := w.byFD[int(ev.Fd)]; s != nil {
				w.event(s, ev.Events)
			}
		}
	}
	w.finish()
}

// quiet reports whether no session waits for a reply or an ACK.
func (w *worker) quiet() bool {
	for _, s := range w.all {
		if len(s.fifo) > 0 || len(s.pend) > 0 {
			return false
		}
	}
	return true
}

// finish accounts for what never came back and closes every socket.
func (w *worker) finish() {
	for _, s := range w.all {
		if w.e.cfg.Reliable {
			w.violation(s, cUnanswered, int64(len(s.fifo)))
			w.violation(s, cUnacked, int64(len(s.pend)))
		} else {
			w.st.add(cUnanswered, int64(len(s.fifo)))
			w.st.add(cUnacked, int64(len(s.pend)))
		}
		if w.e.cfg.Verify {
			if s.shard == "" || !s.resynced {
				// A counter that restarted counts from 1 again, no
				// longer the frames sent: its tail is unknown (the
				// restart is a violation of its own).
				w.violation(s, cUpLost, s.up.tail(s.ctr))
			}
			w.violation(s, cUpTwice, s.excess())
		}
		if s.fd >= 0 {
			w.closeFD(s)
		}
	}
	w.flushStats()
}

func (w *worker) flushStats() {
	w.inc.flush()
	w.e.agg.add(w.st)
	w.e.agg.setUp(w.idx, w.upN)
	w.st.reset()
}

// tick does what is due for s at now.
func (w *worker) tick(s *session, now int64) {
	switch s.state {
	case stIdle:
		if w.draining && !s.everUp {
			return
		}
		w.connect(s, now)
	case stConnecting, stHandshaking:
		if now >= s.deadline {
			w.st.err("timeout")
			w.drop(s, now, "timeout")
			return
		}
		w.setWake(s, s.deadline)
	case stUp:
		w.resendLate(s, now)
		w.sendDue(s, now)
		if now-s.lastW >= s.hb {
			s.wbuf = protocol.AppendFrame(s.wbuf, protocol.TypePing, 0, 0, nil)
			w.st.add(cPings, 1)
		}
		w.flush(s, now)
		if s.state == stUp {
			w.rewake(s, now)
		}
	}
}

// resendLate goes back to the oldest unacknowledged reliable frame and
// sends it and every one after it again when it has waited --resend
// without an ACK: the gateway may have dropped it without a 429 (over a
// rate, a full link, a move's buffer), and a device that waits for the
// ACK forever is stuck (the Go client does the same, ResendTimeout). The
// gateway ACKs what it had already accepted again and drops it.
func (w *worker) resendLate(s *session, now int64) {
	if w.e.cfg.Resend <= 0 || len(s.pend) == 0 || now-s.ackWait < int64(w.e.cfg.Resend) {
		return
	}
	for _, pd := range s.pend {
		s.wbuf = protocol.AppendFrame(s.wbuf, protocol.TypeData, protocol.FlagAckRequested, pd.seq, w.payload(pd.ts, pd.ctr))
		w.st.add(cResent, 1)
	}
	w.st.add(cResendLate, 1)
	s.ackWait = now
}

// rewake schedules s's next action: its next frame, its heartbeat, or
// a resend of what waits too long for its ACK.
func (w *worker) rewake(s *session, now int64) {
	at := w.e.onGrid(s.lastW+s.hb, s.hb)
	if w.e.cfg.Resend > 0 && len(s.pend) > 0 {
		at = min(at, s.ackWait+int64(w.e.cfg.Resend))
	}
	if !w.draining && w.e.cfg.Rate > 0 && s.schedOK {
		at = min(at, max(s.sched.at(s.next), now))
	}
	if s.wake < 0 || at < s.wake {
		w.setWake(s, at)
	}
}

func (w *worker) connect(s *session, now int64) {
	w.st.add(cConnects, 1)
	if s.everUp || s.backoff > 0 {
		w.st.add(cReconnects, 1)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		w.st.err("socket")
		w.retry(s, now)
		return
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if ip := w.e.src.addr(s.g); ip != nil {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		sa := &unix.SockaddrInet4{}
		copy(sa.Addr[:], ip)
		if err := unix.Bind(fd, sa); err != nil {
			unix.Close(fd)
			w.st.err("bind")
			w.retry(s, now)
			return
		}
	}
	err = unix.Connect(fd, &s.dst)
	if err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		w.st.err(errName(err))
		w.retry(s, now)
		return
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(w.ep.fd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		w.st.err("epoll")
		w.retry(s, now)
		return
	}
	s.fd = fd
	w.byFD[fd] = s
	s.addrStr = addrString(s.dst)
	s.goaway, s.errCode = false, 0
	if !s.started {
		s.started = true
		w.endAt = max(w.endAt, now+int64(w.e.cfg.Duration))
	}
	s.state = stConnecting
	s.rbuf, s.wbuf = s.rbuf[:0], s.wbuf[:0]
	s.deadline = now + int64(10*time.Second)
	w.setWake(s, s.deadline)
}

// retry schedules a reconnection with the Go client's backoff (client
// package): attempt n waits a uniformly random time up to min(10 s,
// 100 ms·2ⁿ), and after an ERROR with a retry hint at least half the hint
// (a random time between half of it and all of it). A session that could
// not connect, or whose connection ended without a GOAWAY (the gateway
// died, or refused it), tries another --addr (failover): with a cluster
// it resumes there. After a GOAWAY it goes where that sent it.
func (w *worker) retry(s *session, now int64) {
	if !s.goaway {
		s.alt++
		s.dst = w.e.dst[failover(s.g, s.alt, len(w.e.dst))]
	}
	s.goaway = false
	s.state = stIdle
	if s.backoff == 0 {
		s.backoff = client.DefaultReconnectMin
	} else {
		s.backoff = min(2*s.backoff, client.DefaultReconnectMax)
	}
	wait := rand.N(s.backoff + 1)
	if s.retryMS > 0 {
		hint := time.Duration(s.retryMS) * time.Millisecond
		wait = max(wait, hint/2+rand.N(hint/2+1))
		s.retryMS = 0
	}
	if w.draining && !s.everUp {
		return
	}
	w.setWake(s, now+int64(wait))
}

// failover is the --addr index session g tries after alt connection
// failures among n addresses: its own (g mod n) first, then each of the
// others once, in an order of the session's own, then its own again, and
// so on. The order walks the others (the n−1 addresses after its own)
// from (g / n) mod (n−1) places on, by a stride coprime with n−1 that also
// depends on g. So the sessions of a dead gateway spread evenly over the
// others at their first failure, and when several adjacent gateways die
// together their sessions walk past the dead ones to different survivors.
// A walk by one (each failure trying the next address) sent the sessions
// of 12 dead gateways out of 24 to the first survivor after them: 60,525
// sessions for a gateway sized for 18,000 (docs/scale.md). Devices whose
// fallback lists are shuffled each (client.Config.Fallbacks) spread
// the same way.
func failover(g, alt, n int) int {
	own := g % n
	i := alt % n
	if i == 0 || n < 2 {
		return own
	}
	m := n - 1
	q := g / n
	stride := 1
	if m > 1 {
		stride = 1 + (q/m)%(m-1)
		for gcd(stride, m) != 1 {
			stride = stride%m + 1
		}
	}
	return (own + 1 + (q%m+(i-1)*stride)%m) % n
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func (w *worker) closeFD(s *session) {
	delete(w.byFD, s.fd)
	unix.Close(s.fd)
	s.fd = -1
	if s.state == stUp {
		w.upN--
	}
}

// drop closes s's connection (lost or refused) and schedules a
// reconnection; why is how it ended when no GOAWAY or ERROR explains it.
func (w *worker) drop(s *session, now int64, why string) {
	if s.fd < 0 {
		return
	}
	switch cause := connEnd(s, why); s.state {
	case stUp:
		w.st.add(cDisconnects, 1)
		w.st.disc(cause)
		w.inc.add(incident{What: "disconnect", Cause: cause, Addr: s.addrStr, ID: s.id})
	case stHandshaking:
		w.st.handshakeFailed(cause)
		w.inc.add(incident{What: "handshake", Cause: cause, Addr: s.addrStr, ID: s.id})
	}
	w.closeFD(s)
	if !w.e.cfg.Reliable {
		// Best-effort frames in flight are gone with the connection.
		w.st.add(cUnanswered, int64(len(s.fifo)))
		s.fifo = s.fifo[:0]
	}
	s.wake = -1
	w.retry(s, now)
}

// storm cuts every connection of the worker at once with a reset and
// schedules each reconnection as after any lost connection (retry: the
// next --addr, the client's backoff, so the first attempt within
// 100 ms).
func (w *worker) storm(now int64) {
	var cut []*session
	for _, s := range w.byFD {
		cut = append(cut, s)
	}
	for _, s := range cut {
		_ = unix.SetsockoptLinger(s.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		w.drop(s, now, causeStorm)
	}
	w.st.add(cStormCuts, int64(len(cut)))
}

// addrString formats a gateway address.
func addrString(sa unix.SockaddrInet4) string {
	return net.JoinHostPort(net.IP(sa.Addr[:]).String(), strconv.Itoa(sa.Port))
}

func errName(err error) string {
	var en unix.Errno
	if errors.As(err, &en) {
		switch en {
		case unix.ECONNREFUSED:
			return "conn_refused"
		case unix.ECONNRESET:
			return "conn_reset"
		case unix.EPIPE:
			return "broken_pipe"
		case unix.ETIMEDOUT:
			return "timeout"
		case unix.EADDRNOTAVAIL:
			return "addr_not_avail"
		case unix.EMFILE, unix.ENFILE:
			return "too_many_files"
		}
		return en.Error()
	}
	return err.Error()
}

// event handles epoll events of s.
func (w *worker) event(s *session, evs uint32) {
	now := w.e.now()
	if s.state == stConnecting {
		if evs&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		soerr, err := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && soerr != 0 {
			err = unix.Errno(soerr)
		}
		if err != nil {
			w.st.err(errName(err))
			w.drop(s, now, errName(err))
			return
		}
		w.hello(s)
		s.state = stHandshaking
		w.flush(s, now)
		if s.fd < 0 {
			return
		}
	}
	if evs&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		if !w.read(s, now) {
			return
		}
	}
	if s.fd >= 0 {
		if s.ackOwed {
			s.wbuf = protocol.AppendFrame(s.wbuf, protocol.TypeAck, 0, s.downLast, nil)
			s.ackOwed = false
			w.st.add(cAcksOut, 1)
		}
		w.flush(s, now)
	}
}

func (w *worker) hello(s *session) {
	h := protocol.Hello{V: protocol.Version, ID: s.id}
	if w.e.secret != nil {
		h.Token = protocol.MakeToken(w.e.secret, s.id, time.Now().Add(24*time.Hour))
	}
	if s.resume != nil {
		h.Resume, h.Last = s.resume, s.downLast
	}
	p, err := protocol.EncodeHello(&h)
	if err != nil {
		w.st.err("hello")
		return
	}
	s.wbuf = protocol.AppendFrame(s.wbuf, protocol.TypeHello, 0, 0, p)
}

// flush writes s's pending output as far as the socket takes it.
func (w *worker) flush(s *session, now int64) {
	for len(s.wbuf) > 0 && s.fd >= 0 {
		n, err := rawio.Write(s.fd, s.wbuf)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return
		}
		if err != nil {
			w.st.err(errName(err))
			w.drop(s, now, discName(err))
			return
		}
		s.lastW = now
		s.wbuf = s.wbuf[:copy(s.wbuf, s.wbuf[n:])]
	}
}

// read reads and handles every frame available; false when s was dropped.
func (w *worker) read(s *session, now int64) bool {
	for {
		n, err := rawio.Read(s.fd, w.scratch)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return true
		}
		if err != nil || n == 0 {
			why := causeEOF
			if err != nil {
				w.st.err(errName(err))
				why = discName(err)
			} else if s.state != stUp || !w.draining {
				w.st.err("eof")
			}
			w.drop(s, now, why)
			return false
		}
		s.rbuf = append(s.rbuf, w.scratch[:n]...)
		off := 0
		for {
			f, used, err := protocol.Decode(s.rbuf[off:], protocol.DefaultMaxFrame)
			if err == protocol.ErrIncomplete {
				break
			}
			if err != nil {
				w.st.err("bad_frame")
				w.drop(s, now, "bad_frame")
				return false
			}
			off += used
			if !w.frame(s, f, now) {
				return false
			}
		}
		s.rbuf = s.rbuf[:copy(s.rbuf, s.rbuf[off:])]
	}
}

// frame handles one frame from the gateway; false when s was dropped.
func (w *worker) frame(s *session, f protocol.Frame, now int64) bool {
	switch f.Type {
	case protocol.TypeWelcome:
		if s.state != stHandshaking {
			w.st.err("unexpected_welcome")
			return true
		}
		w.welcome(s, f.Payload, now)
	case protocol.TypeError:
		var m protocol.ErrorMsg
		_ = protocol.Unmarshal(f.Payload, &m)
		w.st.err(strconv.Itoa(m.Code))
		if m.Code != protocol.CodeRateLimited {
			s.errCode = max(m.Code, 1)
			s.retryMS = m.RetryMS
			w.drop(s, now, "")
			return false
		}
	case protocol.TypePing:
		s.wbuf = protocol.AppendFrame(s.wbuf, protocol.TypePong, 0, 0, f.Payload)
	case protocol.TypePong:
		w.st.add(cPongs, 1)
	case protocol.TypeGoAway:
		w.st.add(cGoAway, 1)
		s.goaway = true
		var m protocol.GoAway
		if protocol.Unmarshal(f.Payload, &m) == nil && len(m.Redirect) > 0 {
			if sa, err := resolve(m.Redirect[:1]); err == nil {
				s.dst = sa[0] // reconnect there once this connection closes
			}
		}
	case protocol.TypeAck:
		w.st.add(cAcksIn, 1)
		if f.Seq < s.upAcked {
			w.violation(s, cAckRegress, 1)
		}
		s.upAcked = max(s.upAcked, f.Seq)
		i := 0
		for i < len(s.pend) && s.pend[i].seq <= s.upAcked {
			i++
		}
		if i > 0 {
			s.ackWait = now
		}
		s.pend = s.pend[:copy(s.pend, s.pend[i:])]
	case protocol.TypeData:
		w.data(s, f, now)
	}
	return true
}

func (w *worker) welcome(s *session, p []byte, now int64) {
	var m protocol.Welcome
	if err := protocol.Unmarshal(p, &m); err != nil {
		w.st.err("bad_welcome")
	}
	w.st.add(cHandshakes, 1)
	if s.everUp {
		w.st.add(cReconnected, 1)
	}
	if s.everUp && !m.Resumed {
		// A new session: the gateway forgot the old one.
		w.violation(s, cResumeFailed, 1)
		s.up.resync()
		s.down.resync()
		s.resynced = true
		s.downLast, s.upSeq, s.upAcked = 0, 0, 0
		s.pend = s.pend[:0]
		w.violation(s, cResetUnanswered, int64(len(s.fifo)))
		s.fifo = s.fifo[:0]
	}
	s.resume = append(s.resume[:0], m.Resume...)
	s.hb = int64(time.Duration(max(m.HB, 1)) * time.Second)
	if w.e.cfg.Heartbeat > 0 {
		s.hb = int64(w.e.cfg.Heartbeat)
	}
	s.state = stUp
	s.backoff = 0
	w.upN++
	first := !s.everUp
	s.everUp = true
	// Resend the reliable DATA the gateway has not accepted.
	if m.Resumed {
		i := 0
		for i < len(s.pend) && s.pend[i].seq <= m.Last {
			i++
		}
		s.pend = s.pend[:copy(s.pend, s.pend[i:])]
		s.upAcked = max(s.upAcked, m.Last)
		for _, pd := range s.pend {
			s.wbuf = protocol.AppendFrame(s.wbuf, protocol.TypeData, protocol.FlagAckRequested, pd.seq, w.payload(pd.ts, pd.ctr))
			w.st.add(cResent, 1)
		}
	}
	if first && w.e.cfg.Rate > 0 {
		s.sched = newSchedule(now, w.e.cfg.Rate)
		s.schedOK = true
	}
	if w.e.cfg.Rate <= 0 && !w.draining {
		for len(s.fifo) < w.e.cfg.Window {
			w.sendOne(s, now, now)
		}
	}
	if w.e.cfg.Rate > 0 {
		w.sendDue(s, now)
	}
	s.lastW = now
	w.rewake(s, now)
}

func (w *worker) payload(ts int64, ctr uint64) []byte {
	p := w.pay
	copy(p, magic[:])
	binary.BigEndian.PutUint64(p[4:], uint64(ts))
	binary.BigEndian.PutUint64(p[12:], ctr)
	return p
}

// sendOne queues one DATA due at ts.
func (w *worker) sendOne(s *session, ts, now int64) {
	s.ctr++
	var flags protocol.Flags
	var seq uint32
	if w.e.cfg.Reliable {
		s.upSeq++
		flags, seq = protocol.FlagAckRequested, s.upSeq
		if len(s.pend) == 0 {
			s.ackWait = now
		}
		s.pend = append(s.pend, pending{seq, ts, s.ctr})
	}
	s.wbuf = protocol.AppendFrame(s.wbuf, protocol.TypeData, flags, seq, w.payload(ts, s.ctr))
	s.fifo = append(s.fifo, ts)
	w.st.add(cSent, 1)
}

// sendDue queues the open-loop frames due at now.
func (w *worker) sendDue(s *session, now int64) {
	if w.draining || w.e.cfg.Rate <= 0 || !s.schedOK {
		return
	}
	n := s.sched.due(s.next, now, maxBatch)
	for range n {
		w.sendOne(s, s.sched.at(s.next), now)
		s.next++
	}
}

// data handles a downstream DATA: the reply to one of ours.
func (w *worker) data(s *session, f protocol.Frame, now int64) {
	w.st.add(cReceived, 1)
	if f.Reliable() {
		if w.e.cfg.Verify {
			w.observe(s, &s.down, "down", uint64(f.Seq))
		}
		if f.Seq > s.downLast {
			s.downLast = f.Seq
			s.ackOwed = true
		}
	}
	var ts int64 = -1
	if len(s.fifo) > 0 {
		ts = s.fifo[0]
		s.fifo = s.fifo[:copy(s.fifo, s.fifo[1:])]
	}
	p := f.Payload
	if len(p) >= minPayload && bytes.Equal(p[:4], magic[:]) {
		// Echo: the payload is ours.
		ts = int64(binary.BigEndian.Uint64(p[4:]))
		if w.e.cfg.Verify {
			w.observe(s, &s.up, "up", binary.BigEndian.Uint64(p[12:]))
		}
	} else if w.e.cfg.Verify {
		w.counterReply(s, p)
	}
	if ts >= 0 {
		w.st.Lat.RecordValue(max(now-ts, histMin))
	}
	if w.e.cfg.Rate <= 0 && !w.draining && s.state == stUp {
		for len(s.fifo) < w.e.cfg.Window {
			w.sendOne(s, now, now)
		}
	}
}

// counterReply checks a reply of the counter backend, "<shard> <count>".
// The SDK hands the handler each reliable frame once and in seq order, so
// the count goes 1, 2, 3, … across moves: a count skipped is a frame lost,
// a count seen twice one handled twice (on two shards at once), a count
// back at 1 the session's state reset (a move without its state). A change
// of shard name is a move the device saw (counted, not a violation).
func (w *worker) counterReply(s *session, p []byte) {
	i := bytes.LastIndexByte(p, ' ')
	if i < 0 {
		w.st.err("bad_reply")
		return
	}
	c, err := strconv.ParseUint(string(p[i+1:]), 10, 64)
	if err != nil {
		w.st.err("bad_reply")
		return
	}
	if shard := p[:i]; string(shard) != s.shard {
		if s.shard != "" {
			w.st.add(cShardChanges, 1)
		}
		s.shard = string(shard)
	}
	if c == 1 && s.up.next > 1 && !s.up.sync {
		w.violation(s, cUpReset, 1)
		s.up.resync()
		s.resynced = true
	}
	w.observe(s, &s.up, "up", c)
}

// excess counts, at the end of the run, the upstream numbers observed
// beyond the last one sent: a counter that counted more messages than the
// session sent handled some twice. Meaningless after a resync (the count
// restarted; that is a violation of its own).
func (s *session) excess() int64 {
	if s.resynced || s.up.sync || s.up.next <= s.ctr+1 {
		return 0
	}
	return int64(s.up.next - 1 - s.ctr)
}

// resolve parses "host:port" (IPv4) addresses.
func resolve(addrs []string) ([]unix.SockaddrInet4, error) {
	var out []unix.SockaddrInet4
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return nil, err
		}
		ip := net.ParseIP(host).To4()
		p, err := strconv.Atoi(port)
		if ip == nil || err != nil {
			return nil, errors.New("loadgen: want an IPv4 host:port, got " + a)
		}
		sa := unix.SockaddrInet4{Port: p}
		copy(sa.Addr[:], ip)
		out = append(out, sa)
	}
	return out, nil
}
