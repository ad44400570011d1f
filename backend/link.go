package backend

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-gw/switchyard/internal/rawio"
	"github.com/switchyard-gw/switchyard/protocol"
)

// A link is one authenticated TCP connection from a gateway. It owns two
// goroutines: the reader (authentication, then every envelope in arrival
// order, dispatched without blocking on handlers) and the writer (batches:
// every frame queued while a write is in flight goes out in the next
// write, one syscall).
//
//	producers ──AppendLinkFrame──▶ pending ─swap─▶ writer ──Write──▶ conn
//	 (reader, workers, Send, Publish)   (bounded, mu)   (spare buffer)
type link struct {
	srv    *Server
	conn   net.Conn
	rd     *protocol.StreamReader // reads the link through Read
	idle   time.Duration          // reader only: read deadline per read after authentication; 0 = none
	read   atomic.Int64           // unix nanos of the last byte read: the writer pings when it is old
	id     uint64                 // order of acceptance, for stable link choice per gateway
	node   string                 // the gateway's name, from Hello; set under Server.mu
	authed atomic.Bool

	mu      sync.Mutex
	pending []byte    // encoded frames waiting for the writer
	closing bool      // no more frames are queued
	room    sync.Cond // signalled when the writer took the queue or the link closed
	wake    chan struct{}
	done    chan struct{} // closed by close
	once    sync.Once
	cause   error // why the link closed; read after done
}

// Frame classes for send: droppable frames give way first when the queue
// is full; essential ones close the link as a slow consumer instead.
const (
	droppable = false
	essential = true
)

// frameSlack covers an envelope's fields beyond its payload and ext.
const frameSlack = 64

var (
	errLinkClosed = errors.New("backend: link closed")
	errSlowLink   = errors.New("backend: link queue full (slow consumer)")
	errLinkIdle   = errors.New("backend: link idle")
)

func newLink(srv *Server, conn net.Conn, id uint64) *link {
	l := &link{srv: srv, conn: conn, id: id, wake: make(chan struct{}, 1), done: make(chan struct{})}
	l.room.L = &l.mu
	l.rd = protocol.NewLinkReader(l)
	l.rd.SetLimit(protocol.LinkAuthMaxFrame) // raised once authenticated
	return l
}

// Read reads from the connection for the frame reader, arming the read
// deadline first once the link is authenticated: a link silent for that
// long (no data, no Ping, no Pong) is dead.
//
// A deadline that passed while the gateway's bytes wait in the socket is
// this shard's lateness, not the gateway's silence: a shard process kept
// off the CPU past LinkTimeout (a box far past its cores) wakes to the
// deadline's timer and the bytes at once, and Go's poller reports the
// timer. The read is tried again and counted (Stats.LateDeadlines), as
// the gateway does on its side of the link (server/remote, lateDeadline).
func (l *link) Read(p []byte) (int, error) {
	for {
		if l.idle > 0 {
			_ = l.conn.SetReadDeadline(time.Now().Add(l.idle))
		}
		n, err := l.conn.Read(p)
		if n > 0 {
			l.read.Store(time.Now().UnixNano())
		}
		if n == 0 && l.idle > 0 && l.lateDeadline(err) {
			continue
		}
		return n, err
	}
}

// lateDeadline reports, and counts, a read deadline that passed with the
// gateway's bytes waiting (Read). A function of its own: the error it
// looks into escapes, and a read that succeeded must not pay for that.
func (l *link) lateDeadline(err error) bool {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !rawio.Waiting(l.conn) {
		return false
	}
	l.srv.stats.lateDeadlines.Add(1)
	return true
}

// send queues e. A droppable frame is refused (ErrLinkQueueFull) when the
// queue holds MaxLinkQueue bytes; an essential one may use twice that and
// beyond closes the link. An empty queue always takes the frame.
func (l *link) send(e *protocol.Envelope, class bool) error {
	limit := l.srv.cfg.MaxLinkQueue
	if class == essential {
		limit *= 2
	}
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return errLinkClosed
	}
	if n := len(l.pending); n > 0 && n+len(e.Payload)+len(e.Ext)+frameSlack > limit {
		l.mu.Unlock()
		if class == droppable {
			l.srv.stats.dropLinkQueue.Add(1)
			return ErrLinkQueueFull
		}
		l.srv.stats.slowLinks.Add(1)
		l.close(errSlowLink)
		return errLinkClosed
	}
	l.appendUnlock(e)
	return nil
}

// sendWait queues e once the queue has room below MaxLinkQueue (or is
// empty), waiting for the writer: it paces bulk redelivery, which must
// neither be dropped nor trip the slow-consumer bound. It fails only when
// the link closes.
func (l *link) sendWait(e *protocol.Envelope) error {
	limit := l.srv.cfg.MaxLinkQueue
	l.mu.Lock()
	for !l.closing && len(l.pending) > 0 && len(l.pending)+len(e.Payload)+len(e.Ext)+frameSlack > limit {
		l.room.Wait()
	}
	if l.closing {
		l.mu.Unlock()
		return errLinkClosed
	}
	l.appendUnlock(e)
	return nil
}

// appendUnlock adds e to the queue, releases l.mu (held by the caller) and
// wakes the writer.
func (l *link) appendUnlock(e *protocol.Envelope) {
	l.pending = protocol.AppendLinkFrame(l.pending, e)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// close ends the link at once: nothing more is queued or written, the
// reader's next read fails. Safe from any goroutine, any number of times.
func (l *link) close(cause error) {
	l.once.Do(func() {
		l.mu.Lock()
		l.closing = true
		l.cause = cause
		l.mu.Unlock()
		l.room.Broadcast()
		l.conn.Close()
		close(l.done)
	})
}

// shutdown stops queueing, lets the writer flush what is queued, then
// closes the link. A link still authenticating closes at once.
func (l *link) shutdown() {
	if !l.authed.Load() {
		l.close(ErrClosed)
		return
	}
	l.mu.Lock()
	l.closing = true
	l.mu.Unlock()
	l.room.Broadcast()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// writeLoop is the link's writer goroutine. Its ticker is the link's
// heartbeat: at each PingInterval tick, a link that has read nothing for
// half an interval queues a Ping, which the gateway answers.
func (l *link) writeLoop() {
	cfg := &l.srv.cfg
	tick := time.NewTicker(cfg.PingInterval)
	defer tick.Stop()
	var spare []byte
	for {
		select {
		case <-l.done:
			return
		case now := <-tick.C:
			if now.UnixNano()-l.read.Load() >= int64(cfg.PingInterval/2) {
				l.send(&protocol.Envelope{Kind: protocol.LinkPing}, droppable)
			}
			continue
		case <-l.wake:
		}
		// Let the session workers that are runnable (a read of the link
		// starts them in bursts) queue theirs first: one write for all of
		// them, not one per envelope. A link write costs more than a
		// dozen envelopes' work (docs/benchmarks.md "Remote echo path:
		// the lean path").
		runtime.Gosched()
		l.mu.Lock()
		buf, closing := l.pending, l.closing
		l.pending = spare[:0]
		l.mu.Unlock()
		l.room.Broadcast()
		if len(buf) > 0 {
			l.conn.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
			if _, err := l.conn.Write(buf); err != nil {
				l.close(err)
				return
			}
		}
		spare = recycle(buf)
		if closing && l.queued() == 0 {
			l.close(nil)
			return
		}
	}
}

// queued returns the bytes waiting for the writer.
func (l *link) queued() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending)
}

// keepBuffer is the largest write buffer kept between batches.
const keepBuffer = 256 << 10

func recycle(b []byte) []byte {
	if cap(b) > keepBuffer {
		return nil
	}
	return b[:0]
}

// readLoop is the link's reader goroutine after authentication.
func (l *link) readLoop() {
	srv := l.srv
	l.idle = srv.cfg.LinkTimeout
	l.read.Store(time.Now().UnixNano())
	l.rd.SetLimit(protocol.MaxLinkFrame)
	for {
		e, err := l.rd.NextEnvelope()
		switch {
		case err == nil:
			srv.dispatch(l, &e)
		case errors.Is(err, protocol.ErrLinkMalformed) || errors.Is(err, protocol.ErrLinkVersion):
			srv.stats.dropMalformed.Add(1)
		default:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				srv.stats.linksIdle.Add(1)
				err = fmt.Errorf("%w: nothing read for %v", errLinkIdle, l.idle)
			}
			l.close(err)
			return
		}
	}
}
