package remote

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchyard-gw/switchyard/internal/rawio"
	"github.com/switchyard-gw/switchyard/protocol"
	"github.com/switchyard-gw/switchyard/router"
)

// A link is one authenticated TCP connection from this gateway to a backend
// shard, carrying every session the gateway has on that shard
// (docs/links.md).
//
//	senders ──lock mu──▶ append envelope to out ──wake──▶ writer goroutine: one write per batch
//	device handlers: stage Up/DownAck ── at the end of the handler's batch, lock mu once ──▶ append to out, wake
//	reader goroutine ◀── envelopes ── dispatch to the bound Device by session id: stage its frames, write each device once per read
//
// Link writes are batched across devices: a device's handler hands the
// link its batch of frames at once (stage.go) and wakes the writer once
// per batch, not per frame, and the woken writer
// yields once before it takes the queue, so the handlers already runnable
// (netpoll starts them in bursts) add theirs to the same write. A write
// to a loopback or LAN socket costs about as much as a dozen envelopes'
// encoding and more than a device's read (docs/benchmarks.md "Remote echo
// path: the lean path").
//
// Goroutines: one writer and one reader per link, owned by the Backend,
// which waits for them on Close.

// linkDialTimeout bounds the dial and the three-step authentication.
const linkDialTimeout = 5 * time.Second

type link struct {
	r     *Backend
	shard string
	addr  string
	nc    net.Conn
	rd    *protocol.StreamReader // reads nc through Read; reader goroutine only

	timeout  time.Duration // reader goroutine: read deadline once authenticated (LinkTimeout)
	lastRead atomic.Int64  // unix nanos of the last byte read: the writer pings when it is old

	mu     sync.Mutex
	out    []byte // envelopes waiting for the writer
	spare  []byte
	closed bool
	err    error

	queued int  // envelopes in out, counted into metrics per write
	up     bool // authenticated

	circ      *router.Circuit // the shard's circuit
	m         *linkMetrics
	dirty     []Device  // reader goroutine only: devices written to in this read batch
	spareDown []*[]byte // reader goroutine only: staged buffers to reuse, the last put first (stage.go)
	// rc, inqFn, inq: the reader's look at the bytes waiting in the
	// socket (moreWaiting); rc is nil when the connection has no file
	// descriptor (e.g. wrapped in TLS). Reader goroutine only.
	rc    syscall.RawConn
	inqFn func(fd uintptr)
	inq   int

	// bmu guards bound apart from mu: the reader looks a session up per
	// envelope, and the device handlers take mu per envelope they send.
	bmu   sync.Mutex
	bound map[protocol.SessionID]Device
	// boundGen counts the changes of bound (under bmu): the reader's
	// last lookup (lastSID → lastDev, made at lastGen) stands while it
	// has not moved. A shard answers a device's batch with a run of
	// envelopes of the same session.
	boundGen atomic.Uint64
	lastSID  protocol.SessionID
	lastDev  Device
	lastGen  uint64

	wake chan struct{}
	done chan struct{} // closed when the link has failed or was closed
}

func newLink(r *Backend, shard, addr string) *link {
	return &link{r: r, shard: shard, addr: addr, bound: make(map[protocol.SessionID]Device),
		circ: r.circuits.Get(shard), m: r.m.link(shard),
		wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// run dials, authenticates, then serves the link until it fails. Envelopes
// sent meanwhile wait in out.
func (l *link) run(ctx context.Context) {
	err := l.connect(ctx)
	if err == nil {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.writeLoop()
		}()
		err = l.readLoop()
		l.fail(err)
		wg.Wait()
	}
	l.fail(err)
}

func (l *link) connect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, linkDialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", l.addr)
	if err != nil {
		return fmt.Errorf("remote: link to %s (%s): %w", l.shard, l.addr, err)
	}
	nc = rawio.Wrap(nc) // reads and writes that wake no sysmon (internal/rawio)
	if l.r.cfg.TLS != nil {
		nc = tls.Client(nc, l.tlsConfig())
	}
	l.mu.Lock()
	l.nc = nc
	l.rd = protocol.NewLinkReader(l)
	l.rd.SetLimit(protocol.LinkAuthMaxFrame) // raised once authenticated
	closed := l.closed
	l.mu.Unlock()
	if closed {
		nc.Close()
		return ErrLinkClosed
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if tc, ok := nc.(*tls.Conn); ok {
		if err := tc.HandshakeContext(ctx); err != nil {
			l.m.tlsFailures.Inc()
			return fmt.Errorf("remote: link to %s (%s): TLS handshake (link_tls_ca_file): %w", l.shard, l.addr, err)
		}
	}
	if err := l.authenticate(nc); err != nil {
		if l.r.cfg.TLS == nil && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
			// A shard with link TLS on reads our first frame as a
			// broken TLS record and hangs up without a word.
			err = fmt.Errorf("%w (the shard closed the link before its challenge: does it require link TLS? then set link_tls_ca_file)", err)
		}
		return fmt.Errorf("remote: link to %s (%s): %w", l.shard, l.addr, err)
	}
	l.rd.SetLimit(protocol.MaxLinkFrame)
	l.timeout = l.r.cfg.LinkTimeout
	l.lastRead.Store(time.Now().UnixNano())
	if sc, ok := nc.(syscall.Conn); ok {
		l.rc, _ = sc.SyscallConn()
	}
	l.mu.Lock()
	l.up = true
	l.mu.Unlock()
	l.r.m.links.Add(1)
	// The shard answers: its circuit (opened by the links that failed
	// before, e.g. of the process it replaced) closes now.
	l.circ.Reset()
	l.r.linkUp(l)
	return nc.SetDeadline(time.Time{})
}

// tlsConfig is the link's TLS client configuration: the configured one,
// verifying the shard's certificate for the host of its link address
// unless it names a server itself.
func (l *link) tlsConfig() *tls.Config {
	cfg := l.r.cfg.TLS
	if cfg.ServerName != "" {
		return cfg
	}
	cfg = cfg.Clone()
	cfg.ServerName, _, _ = net.SplitHostPort(l.addr)
	return cfg
}

// authenticate runs the gateway's side of the three-step exchange.
func (l *link) authenticate(nc net.Conn) error {
	gN := make([]byte, protocol.LinkNonceSize)
	_, _ = rand.Read(gN)
	hello, _ := protocol.EncodeLinkExt(&protocol.LinkExt{Node: l.r.name, Nonce: gN})
	if _, err := nc.Write(protocol.AppendLinkFrame(nil, &protocol.Envelope{Kind: protocol.LinkHello, Ext: hello})); err != nil {
		return err
	}
	e, err := l.rd.NextEnvelope()
	if err != nil {
		return err
	}
	keys := *l.r.keys.Load()
	x, err := protocol.DecodeLinkExt(e.Ext)
	if err != nil || e.Kind != protocol.LinkChallenge || len(x.Nonce) != protocol.LinkNonceSize ||
		!protocol.VerifyLinkMAC(keys, x.MAC, protocol.LinkMACBackend, gN, x.Shard) {
		return ErrLinkAuth
	}
	auth, _ := protocol.EncodeLinkExt(&protocol.LinkExt{MAC: protocol.LinkMAC(keys[0], protocol.LinkMACGateway, x.Nonce, l.r.name)})
	_, err = nc.Write(protocol.AppendLinkFrame(nil, &protocol.Envelope{Kind: protocol.LinkAuth, Ext: auth}))
	return err
}

// send queues one envelope. It fails when the link is down, the shard's
// circuit is open, or the queue is over MaxLinkQueue (which opens the
// circuit). A link still connecting takes envelopes whatever the circuit
// says: the circuit was opened by the links before it (a shard restarted
// under its name, whose sessions move to it as soon as gossip shows it),
// this link authenticating closes it, and this link failing fails what
// waits on it.
func (l *link) send(e *protocol.Envelope) error {
	if err := l.admit(1); err != nil {
		return err
	}
	l.appendUnlock(e)
	return nil
}

// sendStaged queues frames, n whole envelopes a device's handler staged
// in its batch (stage.go), like n sends but with one take of l.mu and at
// most one wake of the writer. They are admitted or refused together.
func (l *link) sendStaged(frames []byte, n int) error {
	if err := l.admit(n); err != nil {
		return err
	}
	first := len(l.out) == 0
	l.out = append(l.out, frames...)
	l.queued += n
	l.mu.Unlock()
	if first {
		l.wakeWriter()
	}
	return nil
}

// admit takes l.mu for a send of n envelopes, or returns why they are
// refused (with l.mu released).
func (l *link) admit(n int) error {
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		return ErrLinkClosed
	case l.up && !l.circ.Allow():
		l.mu.Unlock()
		l.m.dropped.Add(n)
		return errCircuitOpen
	case len(l.out) > l.r.cfg.MaxLinkQueue:
		l.mu.Unlock()
		l.circ.Trip(router.QueueFull)
		l.m.dropped.Add(n)
		return errLinkFull
	}
	return nil
}

func (l *link) wakeWriter() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// control queues a link-level envelope (Ping, Pong) past the circuit and
// the queue bound: liveness must not depend on congestion.
func (l *link) control(k protocol.LinkKind) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.appendUnlock(&protocol.Envelope{Kind: k})
}

// appendUnlock queues e, releases l.mu (held by the caller) and wakes the
// writer if the queue was empty (when it was not, the writer was woken
// already, or is writing and looks again when done).
func (l *link) appendUnlock(e *protocol.Envelope) {
	first := len(l.out) == 0
	l.out = protocol.AppendLinkFrame(l.out, e)
	l.queued++
	l.mu.Unlock()
	if first {
		l.wakeWriter()
	}
}

// writeLoop is the link's writer goroutine. Its ticker is the link's
// heartbeat: at each LinkHeartbeat tick, a link that has read nothing for
// half a heartbeat queues a Ping, which the shard answers; so a live
// shard is heard from about every LinkHeartbeat, well within LinkTimeout.
func (l *link) writeLoop() {
	hb := l.r.cfg.LinkHeartbeat
	tick := time.NewTicker(hb)
	defer tick.Stop()
	for {
		select {
		case <-l.done:
			return
		case now := <-tick.C:
			if now.UnixNano()-l.lastRead.Load() >= int64(hb/2) {
				l.control(protocol.LinkPing)
			}
			continue
		case <-l.wake:
		}
		// Let the handlers that are runnable queue their batches first:
		// one write for all of them (see the top of this file).
		runtime.Gosched()
		l.mu.Lock()
		buf, n := l.out, l.queued
		l.out, l.queued = l.spare[:0], 0
		l.mu.Unlock()
		if len(buf) > 0 {
			if _, err := l.nc.Write(buf); err != nil {
				l.fail(err)
				return
			}
			l.circ.Success()
			l.m.sentEnvelopes.Add(n)
			l.m.sentBytes.Add(len(buf))
		}
		l.mu.Lock()
		l.spare = buf[:0]
		more := len(l.out) > 0
		l.mu.Unlock()
		if more {
			l.wakeWriter()
		}
	}
}

// Read reads from the shard for the frame reader, counting the bytes.
// Once the link is authenticated every read has a deadline: a shard that
// sends nothing, not even a Pong, for LinkTimeout is dead (readLoop).
func (l *link) Read(p []byte) (int, error) {
	for {
		if l.timeout > 0 {
			_ = l.nc.SetReadDeadline(time.Now().Add(l.timeout))
		}
		n, err := l.nc.Read(p)
		if n > 0 {
			l.lastRead.Store(time.Now().UnixNano())
			l.m.recvBytes.Add(n)
		}
		if n == 0 && l.lateDeadline(err) {
			continue
		}
		return n, err
	}
}

// lateDeadline reports whether err is a read deadline that passed while
// bytes of the shard waited in the socket: then this gateway was late,
// not the shard silent. A gateway process kept off the CPU for longer
// than LinkTimeout (a box far past its cores) finds the deadline's timer
// and the shard's bytes ready at once, and Go's poller reports the
// timer; taking the shard out of the ring for that moved its sessions
// and, in the million-session run, set off a collapse (docs/scale.md).
// The read is tried again. Links over TLS are not looked into (rc is
// nil): their deadline stands as it is.
func (l *link) lateDeadline(err error) bool {
	var ne net.Error
	if l.timeout == 0 || !errors.As(err, &ne) || !ne.Timeout() || !l.moreWaiting() {
		return false
	}
	l.m.lateDeadlines.Inc()
	return true
}

// readLoop dispatches envelopes until the link fails. The devices written
// to are flushed, and the envelopes counted, once per read: when no whole
// envelope is left buffered.
//
// When the shard has sent more meanwhile (bytes wait in the socket), the
// devices are written after that is read too, up to maxDeferEnvelopes:
// a device then gets its echoes in one write instead of one per read of
// the link, and device writes are most of what the remote path costs
// the gateway (docs/benchmarks.md "Remote echo path: the lean path").
func (l *link) readLoop() error {
	count, deferred := 0, 0
	for {
		e, err := l.rd.NextEnvelope()
		if err != nil {
			l.flushDirty() // what was read before the link failed
			return l.readErr(err)
		}
		l.dispatch(&e)
		count++
		if !l.rd.Buffered() {
			l.m.recvEnvelopes.Add(count)
			deferred += count
			count = 0
			if deferred < maxDeferEnvelopes && l.moreWaiting() {
				continue
			}
			deferred = 0
			l.flushDirty()
		}
	}
}

// maxDeferEnvelopes bounds the envelopes whose devices wait for the next
// read of the link (readLoop): a few reads' worth.
const maxDeferEnvelopes = 1024

// moreWaiting reports whether bytes of the shard wait in the socket
// (one ioctl, no read: a read that finds nothing would park the reader).
func (l *link) moreWaiting() bool {
	if l.rc == nil {
		return false
	}
	if l.inqFn == nil {
		l.inqFn = func(fd uintptr) {
			l.inq, _ = rawio.InQueue(int(fd))
		}
	}
	l.inq = 0
	if l.rc.Control(l.inqFn) != nil {
		return false
	}
	return l.inq > 0
}

// readErr counts a read deadline that expired as a heartbeat timeout.
func (l *link) readErr(err error) error {
	var ne net.Error
	if l.timeout > 0 && errors.As(err, &ne) && ne.Timeout() {
		l.m.timeouts.Inc()
		return fmt.Errorf("%w: nothing read for %v", errLinkTimeout, l.timeout)
	}
	return err
}

// dispatch acts on one envelope from the shard.
func (l *link) dispatch(e *protocol.Envelope) {
	switch e.Kind {
	case protocol.LinkPing:
		l.control(protocol.LinkPong)
		return
	case protocol.LinkPong:
		return
	case protocol.LinkPublish:
		// The frames staged so far came first: they reach their
		// devices before the publication does.
		l.writeStaged()
		x, _ := protocol.DecodeLinkExt(e.Ext)
		l.r.topics.publish(x.Topic, e.Payload)
		return
	}
	d := l.lookup(e.Session)
	if d == nil {
		l.r.m.drop(dropStale)
		return
	}
	b := d.Binding()
	if e.Kind != protocol.LinkDown && e.Kind != protocol.LinkUpAck && b.stager.Load() == l {
		// Anything else may write to the device or close it: the frames
		// staged for it came first and go out first.
		l.writeDevice(d, b)
	}
	switch e.Kind {
	case protocol.LinkOpened:
		if b.moving.Load() {
			if !l.r.mover.opened(l, d, e) {
				l.r.m.drop(dropStale)
			}
			return
		}
		x, _ := protocol.DecodeLinkExt(e.Ext)
		l.r.opened(d, x.Reason == "resumed" || x.Reason == "migrated", x.LastUp, e.Epoch, x.Ckpt)
	case protocol.LinkState:
		l.r.mover.state(l, d, e)
	case protocol.LinkRefused:
		if b.moving.Load() && l.r.mover.refused(l, d, e) {
			return
		}
		x, _ := protocol.DecodeLinkExt(e.Ext)
		code := x.Code
		if code == 0 {
			code = protocol.CodeUnavailable
		}
		d.Fail(code, "refused by backend: "+x.Reason)
	case protocol.LinkUpAck:
		if e.Epoch == b.epoch.Load() {
			if e.Seq >= b.acked.Load() {
				b.acked.Store(e.Seq)
				l.queueTo(d, b, protocol.TypeAck, 0, e.Seq, nil)
			}
		}
	case protocol.LinkDown:
		if e.Epoch != b.epoch.Load() {
			// Not the session's binding (a move or a recovery reopened
			// it since): dropped, and counted like the other stale ones.
			l.r.m.drop(dropStale)
			return
		}
		if k := b.keep.Load(); k != nil && e.Seq > 0 && e.Flags&protocol.FlagAckRequested != 0 {
			k.downSent(e.Seq, e.Flags, e.Payload, l.r.cfg.KeepBuffer, l.r.m)
		}
		l.queueTo(d, b, protocol.TypeData, e.Flags, e.Seq, e.Payload)
	case protocol.LinkCheckpoint:
		if k := b.keep.Load(); k != nil && e.Epoch == b.epoch.Load() {
			k.checkpoint(e.Seq, e.Ext, l.r.m)
		}
	case protocol.LinkSubscribe, protocol.LinkUnsub:
		x, _ := protocol.DecodeLinkExt(e.Ext)
		if x.Topic == "" {
			return
		}
		if e.Kind == protocol.LinkSubscribe {
			l.r.topics.subscribe(d, x.Topic)
		} else {
			l.r.topics.unsubscribe(d, x.Topic)
		}
	case protocol.LinkKick:
		x, _ := protocol.DecodeLinkExt(e.Ext)
		code := x.Code
		if code == 0 {
			code = protocol.CodeConflict
		}
		d.Fail(code, "closed by backend: "+x.Reason)
	}
}

// queueTo stages a frame for a device; flushDirty writes every device
// touched by one read of the link with one write each (stage.go).
func (l *link) queueTo(d Device, b *Binding, t protocol.Type, flags protocol.Flags, seq uint32, payload []byte) {
	if b.stager.Load() != l {
		if !b.stager.CompareAndSwap(nil, l) {
			// Another link's reader stages for d in its read (a move's
			// handover): this frame goes out on its own.
			d.Queue(t, flags, seq, payload)
			d.Flush()
			return
		}
		l.dirty = append(l.dirty, d)
	}
	if b.down == nil {
		b.down = l.getDown()
	}
	*b.down = protocol.AppendFrame(*b.down, t, flags, seq, payload)
	if len(*b.down) >= maxStagedDown {
		l.writeDevice(d, b) // large frames: out now, not held for the whole read
	}
}

// maxStagedDown bounds the bytes staged for one device: past it they are
// written at once, as a device's write buffer is flushed when it fills.
const maxStagedDown = 16 << 10

// writeDevice writes out the frames this reader staged for d.
func (l *link) writeDevice(d Device, b *Binding) {
	if buf := b.down; buf != nil {
		b.down = nil
		d.WriteFrames(*buf)
		l.putDown(buf)
	}
}

// writeStaged writes out every device's staged frames; the devices stay
// this reader's until flushDirty.
func (l *link) writeStaged() {
	for _, d := range l.dirty {
		l.writeDevice(d, d.Binding())
	}
}

// flushDirty writes out the frames staged in this read and lets the
// devices go.
func (l *link) flushDirty() {
	for i, d := range l.dirty {
		b := d.Binding()
		l.writeDevice(d, b)
		b.stager.Store(nil)
		l.dirty[i] = nil
	}
	l.dirty = l.dirty[:0]
}

// lookup returns the device bound to sid (nil when none). Reader
// goroutine: a run of envelopes of one session looks it up once.
func (l *link) lookup(sid protocol.SessionID) Device {
	if sid == l.lastSID && l.lastDev != nil && l.boundGen.Load() == l.lastGen {
		return l.lastDev
	}
	l.bmu.Lock()
	d := l.bound[sid]
	gen := l.boundGen.Load()
	l.bmu.Unlock()
	l.lastSID, l.lastDev, l.lastGen = sid, d, gen
	return d
}

func (l *link) bind(sid protocol.SessionID, d Device) {
	l.bmu.Lock()
	l.bound[sid] = d
	l.boundGen.Add(1)
	l.bmu.Unlock()
}

func (l *link) unbind(sid protocol.SessionID, d Device) {
	l.bmu.Lock()
	if l.bound[sid] == d {
		delete(l.bound, sid)
		l.boundGen.Add(1)
	}
	l.bmu.Unlock()
}

// fail closes the link and tells every session on it: when the shard is
// down for this gateway (this was its last link) each session is
// recovered on the next shard from its checkpoint, and so are the
// sessions of its other links that failed just before (crash.go); the
// devices of the others get 503 and resume through another path.
func (l *link) fail(err error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed, l.err = true, err
	l.bmu.Lock()
	bound := l.bound
	l.bound = map[protocol.SessionID]Device{}
	l.boundGen.Add(1)
	l.bmu.Unlock()
	nc, up := l.nc, l.up
	l.mu.Unlock()
	close(l.done)
	if nc != nil {
		nc.Close()
	}
	if up {
		l.r.m.links.Add(-1)
	}
	l.circ.Trip(router.LinkDown)
	l.m.failures.Inc()
	// One failing link at a time from here: a shard's links fail together,
	// and the one that takes the shard down rebuilds the ring before any
	// of them looks up where its sessions go (crash.go).
	l.r.fmu.Lock()
	defer l.r.fmu.Unlock()
	l.r.linkFailed(l, err, up)
	down := l.r.isDown(l.shard)
	for _, d := range bound {
		// A shard that failed for this gateway: its sessions reopen on
		// the next shard from their checkpoints; while the shard still
		// has other links, they wait to see whether it fails (crash.go).
		if down && l.r.mover.recover(l, d) || !down && l.r.awaitShard(l, d) {
			continue
		}
		d.Fail(protocol.CodeUnavailable, "backend link lost")
	}
	if down {
		l.r.recoverLost(l.shard)
	}
}
