package server

import (
	"context"
	"crypto/hmac"
	"errors"
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

// linkRetry is how long after a failed link the gateway answers new sessions
// for that shard with 503 instead of dialing again.
const linkRetry = time.Second

// DefaultMaxLinkQueue bounds the bytes queued on one link.
const DefaultMaxLinkQueue = 4 << 20

// remoteBackend sends sessions to backend shards over links.
type remoteBackend struct {
	g        *Gateway
	dir      Directory
	keys     [][]byte
	maxQueue int
	ctx      context.Context
	cancel   context.CancelFunc

	topics   *topics
	circuits *router.Circuits

	mu     sync.Mutex
	links  map[string]*link     // by shard
	failed map[string]time.Time // shard → when its link last failed
	wg     sync.WaitGroup
}

var _ backend = (*remoteBackend)(nil)

func newRemoteBackend(g *Gateway, dir Directory, keys [][]byte) *remoteBackend {
	ctx, cancel := context.WithCancel(context.Background())
	circuits, _ := router.NewCircuits(router.CircuitConfig{})
	return &remoteBackend{g: g, dir: dir, keys: keys, maxQueue: DefaultMaxLinkQueue, ctx: ctx, cancel: cancel,
		topics: newTopics(), circuits: circuits, links: map[string]*link{}, failed: map[string]time.Time{}}
}

// verify checks a MAC made with any of the cluster keys.
func (r *remoteBackend) verify(mac []byte, label string, nonce []byte, name string) bool {
	ok := false
	for _, k := range r.keys {
		ok = hmac.Equal(mac, linkMAC(k, label, nonce, name)) || ok
	}
	return ok
}

// linkTo returns the link to shard, starting one when there is none.
func (r *remoteBackend) linkTo(shard, addr string) *link {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.links[shard]
	if old != nil && old.addr == addr {
		return old
	}
	if old != nil {
		// The shard came back at another address: its old link is dead
		// weight (and its sessions are gone with the old process).
		delete(r.links, shard)
		go old.fail(errShardMoved)
	}
	if t, ok := r.failed[shard]; ok && time.Since(t) < linkRetry {
		return nil
	}
	if r.ctx.Err() != nil {
		return nil
	}
	l := newLink(r, shard, addr)
	r.links[shard] = l
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		l.run(r.ctx)
	}()
	return l
}

func (r *remoteBackend) linkFailed(l *link, err error) {
	r.mu.Lock()
	if r.links[l.shard] == l {
		delete(r.links, l.shard)
		r.failed[l.shard] = time.Now()
	}
	r.mu.Unlock()
	if r.ctx.Err() == nil {
		r.g.log.Warn("backend link lost", "shard", l.shard, "addr", l.addr, "err", err)
	}
}

func (r *remoteBackend) open(c *conn, s *session, h *protocol.Hello, resumed bool) {
	shard, addr, err := r.dir.Owner(h.ID)
	if err != nil {
		c.fail(protocol.CodeUnavailable, "no backend available")
		return
	}
	l := r.linkTo(shard, addr) // the Open below is refused while the shard's circuit is open
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
	err := c.link.send(&protocol.Envelope{Kind: protocol.LinkUp, Session: s.id, Epoch: c.epoch.Load(),
		Seq: f.Seq, Flags: f.Flags, Payload: f.Payload})
	if err != nil {
		// Not ACKed: the device resends reliable DATA later.
		r.g.metrics.drop(dropBackend)
	}
}

func (r *remoteBackend) ack(c *conn, s *session, seq uint32) {
	_ = c.link.send(&protocol.Envelope{Kind: protocol.LinkDownAck, Session: s.id, Epoch: c.epoch.Load(), Seq: seq})
}

func (r *remoteBackend) closed(c *conn, s *session) {
	if c.link == nil {
		return
	}
	r.topics.drop(c)
	c.link.unbind(s.id, c)
	ext, _ := protocol.EncodeLinkExt(&protocol.LinkExt{Reason: "disconnected"})
	_ = c.link.send(&protocol.Envelope{Kind: protocol.LinkClose, Session: s.id, Epoch: c.epoch.Load(), Ext: ext})
}

// ConnectShards opens links to every shard in shards (name → link address)
// that has none, so that a Publish from any shard reaches this gateway's
// subscribers. The cluster wiring calls it when the ring changes.
func (g *Gateway) ConnectShards(shards map[string]string) {
	if g.remote == nil {
		return
	}
	for name, addr := range shards {
		g.remote.linkTo(name, addr)
	}
}

// close stops every link and waits for their goroutines.
func (r *remoteBackend) close() {
	r.cancel()
	r.mu.Lock()
	links := make([]*link, 0, len(r.links))
	for _, l := range r.links {
		links = append(links, l)
	}
	r.mu.Unlock()
	for _, l := range links {
		l.fail(ErrLinkClosed)
	}
	r.wg.Wait()
}
