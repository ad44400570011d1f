package server

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
	"github.com/switchyard-gw/switchyard/router"
)

// Directory tells the gateway which backend shard owns a device's session
// and where that shard's link listener is. The cluster wiring builds one
// from gossip and the router's ring; tests use static ones.
type Directory interface {
	Owner(deviceID string) (shard, linkAddr string, err error)
}

// ErrNoShard is what a Directory returns when no shard can take a device;
// the device gets 503.
var ErrNoShard = errors.New("server: no backend shard available")

var errShardMoved = errors.New("server: shard moved to another address")

// Link reconnection: after a link to a shard fails, new sessions of that
// shard get 503 until the next dial is due: linkRetryMin after the first
// failure, doubling up to linkRetryMax, each with ±25 % jitter so that
// gateways do not redial a restarted shard in step. An authenticated link
// resets the backoff.
const (
	linkRetryMin = 100 * time.Millisecond
	linkRetryMax = 10 * time.Second
)

// Defaults of the links to backend shards.
const (
	DefaultMaxLinkQueue  = 4 << 20 // bytes queued on one link
	DefaultLinksPerShard = 2       // links from a gateway to each shard
)

// remoteBackend sends sessions to backend shards over links.
type remoteBackend struct {
	g        *Gateway
	dir      Directory
	keys     [][]byte
	maxQueue int
	perShard int
	ctx      context.Context
	cancel   context.CancelFunc

	topics   *topics
	circuits *router.Circuits
	mover    *mover

	mu     sync.Mutex
	shards map[string]*shardLinks
	down   map[string]bool // shards whose last link failed: out of the ring until one is back (failover.go)
	wg     sync.WaitGroup
}

// shardLinks are a gateway's links to one shard. Guarded by remoteBackend.mu.
type shardLinks struct {
	addr    string
	links   []*link   // perShard slots; nil = not connected
	up      int       // links in the slots that authenticated
	upSince time.Time // when up last went from 0 to 1
	fails   int       // consecutive failed links
	retryAt time.Time
}

var _ backend = (*remoteBackend)(nil)

func newRemoteBackend(g *Gateway, dir Directory, keys [][]byte) *remoteBackend {
	ctx, cancel := context.WithCancel(context.Background())
	circuits, _ := router.NewCircuits(router.CircuitConfig{})
	perShard := g.cfg.LinksPerShard
	if perShard <= 0 {
		perShard = DefaultLinksPerShard
	}
	r := &remoteBackend{g: g, dir: dir, keys: keys, maxQueue: DefaultMaxLinkQueue, perShard: perShard,
		ctx: ctx, cancel: cancel, topics: newTopics(), circuits: circuits, shards: map[string]*shardLinks{},
		down: map[string]bool{}}
	r.mover = newMover(r)
	return r
}

// start starts the mover goroutine (Gateway.Start).
func (r *remoteBackend) start() {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.mover.run(r.ctx)
	}()
}

// Rebalance moves every session of this gateway whose shard is not the one
// the Directory names for its device any more, at most MoveRate a second,
// with its device still connected (move.go). The cluster wiring calls it
// when the ring changes; a gateway with a static Directory calls it after
// the Directory changed.
func (g *Gateway) Rebalance() {
	if g.remote != nil {
		g.remote.mover.rebalance()
	}
}

// linkTo returns link slot of shard (a session always uses the slot its id
// hashes to, so its frames stay in order), dialing when the slot is empty
// and no backoff is pending; nil while the shard is backing off.
func (r *remoteBackend) linkTo(shard, addr string, slot int) *link {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil {
		return nil
	}
	sl := r.shards[shard]
	if sl != nil && sl.addr != addr {
		// The shard came back at another address: its old links are dead
		// weight (and their sessions went with the old process).
		for _, l := range sl.links {
			if l != nil {
				go l.fail(errShardMoved)
			}
		}
		sl = nil
	}
	if sl == nil {
		sl = &shardLinks{addr: addr, links: make([]*link, r.perShard)}
		r.shards[shard] = sl
	}
	slot %= len(sl.links)
	if l := sl.links[slot]; l != nil {
		return l
	}
	if time.Now().Before(sl.retryAt) {
		return nil
	}
	l := newLink(r, shard, addr)
	sl.links[slot] = l
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		l.run(r.ctx)
	}()
	return l
}

// linkUp resets the shard's backoff once a link authenticated. A shard
// that was down comes back once a link stayed up for a while (failover.go).
func (r *remoteBackend) linkUp(l *link) {
	r.mu.Lock()
	if sl := r.shards[l.shard]; sl != nil && slices.Contains(sl.links, l) {
		sl.fails, sl.retryAt = 0, time.Time{}
		if sl.up == 0 {
			sl.upSince = time.Now()
		}
		sl.up++
	}
	r.mu.Unlock()
}

// linkFailed frees l's slot, arms the backoff, and takes the shard out of
// the ring when l was its last authenticated link (failover.go).
func (r *remoteBackend) linkFailed(l *link, err error, wasUp bool) {
	r.mu.Lock()
	down := false
	if sl := r.shards[l.shard]; sl != nil {
		for i, x := range sl.links {
			if x != l {
				continue
			}
			sl.links[i] = nil
			sl.fails++
			d := min(linkRetryMin<<min(sl.fails-1, 16), linkRetryMax)
			d += time.Duration(rand.Int64N(int64(d)/2)) - d/4
			sl.retryAt = time.Now().Add(d)
			if wasUp {
				sl.up--
				down = sl.up == 0 && r.ctx.Err() == nil && !r.down[l.shard]
				if down {
					r.down[l.shard] = true
				}
			}
		}
	}
	r.mu.Unlock()
	if r.ctx.Err() == nil {
		r.g.log.Warn("backend link lost", "shard", l.shard, "addr", l.addr, "err", err)
	}
	if down {
		r.shardDown(l)
	}
}

func (r *remoteBackend) open(c *conn, s *session, h *protocol.Hello, resumed bool) {
	shard, addr, err := r.dir.Owner(h.ID)
	if err != nil {
		c.fail(protocol.CodeUnavailable, "no backend available")
		return
	}
	// The Open below is refused while the shard's circuit is open.
	l := r.linkTo(shard, addr, int(s.id[0]))
	if l == nil {
		c.fail(protocol.CodeUnavailable, "backend unavailable")
		return
	}
	reason := "new"
	if resumed {
		reason = "resumed"
	}
	ext, err := protocol.EncodeLinkExt(&protocol.LinkExt{Device: h.ID, Tags: h.Tags, Reason: reason,
		DownSeq: h.Last, Node: r.g.linkName()})
	if err != nil {
		c.fail(protocol.CodeInternal, "internal error")
		return
	}
	c.link = l
	l.bind(s.id, c)
	if err := l.send(&protocol.Envelope{Kind: protocol.LinkOpen, Session: s.id, Ext: ext}); err != nil {
		l.unbind(s.id, c)
		c.fail(protocol.CodeUnavailable, "backend unavailable")
	}
}

func (r *remoteBackend) data(c *conn, s *session, f protocol.Frame) {
	if c.moving.Load() && r.mover.hold(c, &f) {
		return
	}
	err := c.link.send(&protocol.Envelope{Kind: protocol.LinkUp, Session: s.id, Epoch: c.epoch.Load(),
		Seq: f.Seq, Flags: f.Flags, Payload: f.Payload})
	if err != nil {
		// Not ACKed: the device resends reliable DATA later.
		r.g.metrics.drop(dropBackend)
	}
}

func (r *remoteBackend) ack(c *conn, s *session, seq uint32) {
	if c.moving.Load() && r.mover.hold(c, &protocol.Frame{Type: protocol.TypeAck, Seq: seq}) {
		return
	}
	_ = c.link.send(&protocol.Envelope{Kind: protocol.LinkDownAck, Session: s.id, Epoch: c.epoch.Load(), Seq: seq})
}

func (r *remoteBackend) closed(c *conn, s *session) {
	r.mover.closed(c)
	l, epoch := r.mover.binding(c)
	if l == nil {
		return
	}
	r.topics.drop(c)
	l.unbind(s.id, c)
	ext, _ := protocol.EncodeLinkExt(&protocol.LinkExt{Reason: "disconnected"})
	_ = l.send(&protocol.Envelope{Kind: protocol.LinkClose, Session: s.id, Epoch: epoch, Ext: ext})
}

// ConnectShards opens links to every shard in shards (name → link address)
// that has none, so that a Publish from any shard reaches this gateway's
// subscribers. The cluster wiring calls it when the ring changes.
func (g *Gateway) ConnectShards(shards map[string]string) {
	if g.remote == nil {
		return
	}
	for name, addr := range shards {
		for slot := range g.remote.perShard {
			g.remote.linkTo(name, addr, slot)
		}
	}
}

// close stops every link and waits for their goroutines.
func (r *remoteBackend) close() {
	r.cancel()
	r.mu.Lock()
	var links []*link
	for _, sl := range r.shards {
		for _, l := range sl.links {
			if l != nil {
				links = append(links, l)
			}
		}
	}
	r.mu.Unlock()
	for _, l := range links {
		l.fail(ErrLinkClosed)
	}
	r.wg.Wait()
}
