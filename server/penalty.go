package server

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// The abuse penalty. MaxUnread and the flood rate close a flooding device
// at once (handler.go), which bounds what one connection costs; but an
// attacker reconnects at once, and every new connection is a handshake, a
// new session and a fresh burst of frames handled before the bound trips
// again: on a 2-core box one flooder reconnecting 600 times a second took
// most of a core and quadrupled the quiet devices' p99 (docs/benchmarks.md
// "One flooder beside quiet devices"). So the gateway remembers where the
// floods came from:
//
//	flood close (413 unread_limit, 429 rate_flood) ──▶ strike(source)
//	penaltyStrikes strikes, each within penaltyForget of the last
//	  ──▶ the source is penalized for AbusePenalty after its last strike
//	accept from a penalized source ──▶ ERROR 503 with retry_ms (the penalty
//	  left) and close, before any read: connections_rejected_total{reason="penalty"}
//
// A source is the device's address (the PROXY header's when the gateway
// is behind a load balancer, never the balancer's): an IPv4 address or an
// IPv6 /64, the block one subscriber usually holds. Several strikes are
// needed, so one misbehaving device behind a carrier NAT does not lock out
// its neighbours for one mistake; a source that floods again after its
// penalty, before penaltyForget, is penalized again at its first strike.
// The table is bounded (penaltySources); when it is full and nothing in it
// has expired, a new source is not tracked (penalty_untracked_total). The
// switchyard_penalized_sources gauge sweeps it when scraped.

const (
	penaltyStrikes = 3       // flood closes that make a source penalized
	penaltyForget  = 6       // strikes are forgotten this many penalties after the last
	penaltySources = 1 << 16 // sources tracked at most (about 60 bytes each)
)

// penaltyBox is the gateway's table of sources that flooded. Its methods
// take the coarse clock (wheel ticks) and the penalty in ticks, so the
// table knows nothing of time or configuration; the penalty is live.
type penaltyBox struct {
	n atomic.Int64 // sources in the table: 0 is the accept path's fast way out

	mu sync.Mutex
	m  map[netip.Addr]strikes
}

type strikes struct {
	n    int   // strikes within penaltyForget of each other
	last int64 // tick of the last one
}

// sourceKey is the table's key for a device address: IPv4 as is, IPv6 as
// its /64. The zero Addr for an address that is not IP (a test's pipe).
func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// strike records a flood close from src at now (ticks); false when the
// table is full and src could not be added.
func (p *penaltyBox) strike(src netip.Addr, now, penalty int64) bool {
	if !src.IsValid() || penalty <= 0 {
		return true
	}
	k := sourceKey(src)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[netip.Addr]strikes{}
	}
	s, ok := p.m[k]
	if !ok && len(p.m) >= penaltySources {
		p.sweepLocked(now, penalty)
		if len(p.m) >= penaltySources {
			return false
		}
	}
	if ok && now-s.last > penaltyForget*penalty {
		s.n = 0
	}
	s.n++
	s.last = now
	p.m[k] = s
	p.n.Store(int64(len(p.m)))
	return true
}

// left is the penalty src still has at now, in ticks; 0 when it may
// connect. Cheap when nobody flooded (one atomic load).
func (p *penaltyBox) left(src netip.Addr, now, penalty int64) int64 {
	if p.n.Load() == 0 || !src.IsValid() || penalty <= 0 {
		return 0
	}
	k := sourceKey(src)
	p.mu.Lock()
	s, ok := p.m[k]
	p.mu.Unlock()
	if !ok || s.n < penaltyStrikes {
		return 0
	}
	return max(s.last+penalty-now, 0)
}

// sweep forgets the sources whose strikes are too old to count and
// returns how many are penalized now; the gauge calls it at each scrape,
// and strike when the table is full.
func (p *penaltyBox) sweep(now, penalty int64) int64 {
	if p.n.Load() == 0 {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sweepLocked(now, penalty)
}

func (p *penaltyBox) sweepLocked(now, penalty int64) int64 {
	var penalized int64
	for k, s := range p.m {
		switch {
		case penalty <= 0 || now-s.last > penaltyForget*penalty:
			delete(p.m, k)
		case s.n >= penaltyStrikes && now-s.last < penalty:
			penalized++
		}
	}
	p.n.Store(int64(len(p.m)))
	return penalized
}

// source is the device's address for the penalty: the PROXY header's
// when the connection owes or had one, else the socket's peer. Invalid
// while a PROXY header is still due (the peer is the load balancer).
func (c *conn) source() netip.Addr {
	if c.proxy != nil {
		if c.proxy.done.Load() {
			return c.proxy.src
		}
		return netip.Addr{}
	}
	if a, ok := c.nc.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr()
	}
	return netip.Addr{}
}

// penaltyLeft is how long (ticks) this connection's source is still
// penalized; 0 when it is not.
func (c *conn) penaltyLeft() int64 {
	g := c.g
	return g.penalty.left(c.source(), g.wheel.Now(), g.live.Load().penaltyTicks)
}

// penalized refuses the connection when its source is penalized: ERROR
// 503 with the penalty left as retry_ms. The caller closes it when true.
func (c *conn) penalized() bool {
	left := c.penaltyLeft()
	if left <= 0 {
		return false
	}
	g := c.g
	g.metrics.rejectPenalty.Inc()
	ms := int(min(left*g.wheel.Tick().Milliseconds(), 1<<30))
	c.refuseRetry("too many floods from this address", max(ms, 1))
	return true
}

// strike records this connection's flood close against its source.
func (c *conn) strike() {
	g := c.g
	if !g.penalty.strike(c.source(), g.wheel.Now(), g.live.Load().penaltyTicks) {
		g.metrics.penaltyUntracked.Inc()
	}
}
