package remote

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
	"github.com/switchyard-gw/switchyard/router"
)

// Link reconnection: after a link to a shard fails, new sessions of that
// shard get 503 until the next dial is due: linkRetryMin after the first
// failure, doubling up to linkRetryMax, each with ±25 % jitter so that
// gateways do not redial a restarted shard in step. An authenticated link
// resets the backoff.
const (
	linkRetryMin = 100 * time.Millisecond
	linkRetryMax = 10 * time.Second
)

// Backend sends sessions to backend shards over links. The device side
// calls Open, Data, Ack and Closed (the same methods as its embedded echo
// backend's); the cluster wiring calls ConnectShards, Rebalance and the
// failover methods.
type Backend struct {
	cfg    Config
	dir    Directory
	log    *slog.Logger
	m      *Metrics
	name   string                   // this gateway's name on links (Start)
	keys   atomic.Pointer[[][]byte] // link keys: cfg.Keys, then SetKeys
	ctx    context.Context
	cancel context.CancelFunc

	topics   *topics
	circuits *router.Circuits
	mover    *mover

	fmu    sync.Mutex // held by a failing link from linkFailed to its sessions' recovery
	lostMu sync.Mutex
	lost   map[Device]lostBinding // sessions whose link failed while their shard had others (crash.go)

	mu     sync.Mutex
	shards map[string]*shardLinks
	down   map[string]bool // shards whose last link failed: out of the ring until one is back (failover.go)
	wg     sync.WaitGroup
}

// shardLinks are a gateway's links to one shard. Guarded by Backend.mu.
type shardLinks struct {
	addr    string
	links   []*link   // LinksPerShard slots; nil = not connected
	up      int       // links in the slots that authenticated
	upSince time.Time // when up last went from 0 to 1
	fails   int       // consecutive failed links
	retryAt time.Time
}

// New validates cfg and returns a Backend that is not started.
func New(cfg Config) (*Backend, error) {
	cfg = cfg.provision()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	circuits, _ := router.NewCircuits(router.CircuitConfig{})
	r := &Backend{cfg: cfg, dir: cfg.Directory, log: cfg.Logger, m: cfg.Metrics,
		ctx: ctx, cancel: cancel, topics: newTopics(), circuits: circuits, shards: map[string]*shardLinks{},
		down: map[string]bool{}, lost: map[Device]lostBinding{}}
	r.mover = newMover(r)
	r.keys.Store(&cfg.Keys)
	r.m.set.RegisterMetricsWriter(r.writeShards)
	return r, nil
}

// Start starts the mover goroutine. name names this gateway to shards
// (the node name and the device address, unique even for several gateways
// on one host: shards send a Publish once per gateway name); the gateway
// knows it once its device listener is bound, and calls Start before
// anything may dial a link.
func (r *Backend) Start(name string) {
	r.name = name
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.mover.run(r.ctx)
	}()
}

// Rebalance moves every session of this gateway whose shard is not the
// one the Directory names for its device any more, at most MoveRate a
// second, with its device still connected (move.go).
func (r *Backend) Rebalance() { r.mover.rebalance() }

// linkTo returns link slot of shard (a session always uses the slot its id
// hashes to, so its frames stay in order), dialing when the slot is empty
// and no backoff is pending; nil while the shard is backing off.
func (r *Backend) linkTo(shard, addr string, slot int) *link {
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
		sl = &shardLinks{addr: addr, links: make([]*link, r.cfg.LinksPerShard)}
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
func (r *Backend) linkUp(l *link) {
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
func (r *Backend) linkFailed(l *link, err error, wasUp bool) {
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
		r.log.Warn("backend link lost", "shard", l.shard, "addr", l.addr, "err", err)
	}
	if down {
		r.shardDown(l)
	}
}

// Open binds d's session on the shard the Directory names for its device
// (h is its HELLO; resumed says the gateway found or verified an earlier
// session). The shard answers on its link: Opened completes the handshake
// (Device.Opened), Refused fails the device. The device side calls it from
// its handler with its Lock held.
func (r *Backend) Open(d Device, h *protocol.Hello, resumed bool) {
	// The tags place the session now and at every ring or rule change
	// (the mover's passes), as long as this connection lives.
	d.Binding().tags = h.Tags
	p, err := r.dir.Owner(h.ID, h.Tags)
	if err != nil {
		d.Fail(protocol.CodeUnavailable, "no backend available")
		return
	}
	id, _ := d.Session()
	// The Open below is refused while the shard's circuit is open.
	l := r.linkTo(p.Shard, p.Addr, int(id[0]))
	if l == nil {
		d.Fail(protocol.CodeUnavailable, "backend unavailable")
		return
	}
	reason := "new"
	if resumed {
		reason = "resumed"
	}
	ext, err := protocol.EncodeLinkExt(&protocol.LinkExt{Device: h.ID, Tags: h.Tags, Reason: reason,
		DownSeq: h.Last, Node: r.name})
	if err != nil {
		d.Fail(protocol.CodeInternal, "internal error")
		return
	}
	d.Binding().link = l
	d.Binding().rule = p.Rule
	l.bind(id, d)
	if err := l.send(&protocol.Envelope{Kind: protocol.LinkOpen, Session: id, Ext: ext}); err != nil {
		l.unbind(id, d)
		d.Fail(protocol.CodeUnavailable, "backend unavailable")
		return
	}
	r.m.placed(p)
}

// opened completes the open of d at epoch, unless d is no longer opening
// (it closed meanwhile); ckpt: the shard checkpoints the session. Link
// reader.
func (r *Backend) opened(d Device, resumed bool, last uint32, epoch uint64, ckpt bool) {
	d.Lock()
	defer d.Unlock()
	if !d.Opening() {
		return
	}
	b := d.Binding()
	b.epoch.Store(epoch)
	b.keepOn(ckpt, r.m)
	d.Opened(resumed, last)
}

// Data sends the device's upstream DATA f (reliable ones have seq ≥ 1) to
// its shard, or holds it while the session moves. The device side calls
// it with its Lock held, in frame order; f.Payload is valid only during
// the call. A reliable frame is ACKed to the device when the shard's
// UpAck arrives. The envelope is staged, not queued on the link: the
// device side calls Flush at the end of its batch (stage.go).
func (r *Backend) Data(d Device, f protocol.Frame) {
	b := d.Binding()
	if b.moving.Load() && r.mover.hold(d, &f) {
		return
	}
	id, _ := d.Session()
	if k := b.keep.Load(); k != nil && f.Reliable() {
		// Kept even if the send fails: a crash of the shard replays it.
		k.upSent(f.Seq, f.Flags, f.Payload, r.cfg.KeepBuffer, r.m)
	}
	b.stageUp(&protocol.Envelope{Kind: protocol.LinkUp, Session: id, Epoch: b.epoch.Load(),
		Seq: f.Seq, Flags: f.Flags, Payload: f.Payload})
}

// Ack sends the device's cumulative ACK of downstream DATA to its shard.
// Same caller, lock and Flush as Data.
func (r *Backend) Ack(d Device, seq uint32) {
	b := d.Binding()
	if k := b.keep.Load(); k != nil {
		k.downAcked(seq, r.m)
	}
	if b.moving.Load() && r.mover.hold(d, &protocol.Frame{Type: protocol.TypeAck, Seq: seq}) {
		return
	}
	id, _ := d.Session()
	b.stageUp(&protocol.Envelope{Kind: protocol.LinkDownAck, Session: id, Epoch: b.epoch.Load(), Seq: seq})
}

// Flush sends what Data and Ack staged for d's shard: the device side
// calls it once per batch of frames (with Lock held), which takes the
// link's lock and wakes its writer once per batch instead of once per
// frame (stage.go). A refused batch (link down, circuit open, queue
// full) is dropped whole: its DATA counted, not ACKed to the device,
// which resends reliable DATA later.
func (r *Backend) Flush(d Device) {
	b := d.Binding()
	s := b.takeUp()
	if s.buf == nil {
		return
	}
	if err := b.link.sendStaged(*s.buf, s.n); err != nil && s.data > 0 {
		r.m.drops[dropBackend].Add(s.data)
	}
	putStage(s.buf)
}

// Closed tells the shard that d's connection ended (the shard keeps the
// session for the resume window) and ends a move in progress. The device
// side calls it once, from its close callback or from whoever holds its
// Lock when the close is handled; never with moveTable.mu held.
func (r *Backend) Closed(d Device) {
	r.Flush(d) // what the device's last batch staged came before its close
	r.mover.closed(d)
	r.lostMu.Lock()
	delete(r.lost, d)
	r.lostMu.Unlock()
	if k := d.Binding().keep.Swap(nil); k != nil {
		k.reset(r.m)
	}
	l, epoch := r.mover.binding(d)
	if l == nil {
		return
	}
	r.topics.drop(d)
	id, _ := d.Session()
	l.unbind(id, d)
	_ = l.send(&protocol.Envelope{Kind: protocol.LinkClose, Session: id, Epoch: epoch, Ext: disconnectedExt})
}

// disconnectedExt is the ext of every Close for a device gone: encoded
// once, not per close (a reconnect storm closes every session at once, and
// each allocation there is garbage collection at the gateway's low GOGC).
// send copies it into the link's frame.
var disconnectedExt, _ = protocol.EncodeLinkExt(&protocol.LinkExt{Reason: "disconnected"})

// ConnectShards opens links to every shard in shards (name → link address)
// that has none, so that a Publish from any shard reaches this gateway's
// subscribers. The cluster wiring calls it when the ring changes.
func (r *Backend) ConnectShards(shards map[string]string) {
	for name, addr := range shards {
		for slot := range r.cfg.LinksPerShard {
			r.linkTo(name, addr, slot)
		}
	}
}

// Close stops every link and the mover and waits for their goroutines.
// It is idempotent.
func (r *Backend) Close() {
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

// SetKeys replaces the link keys (a configuration reload): new links sign
// with keys[0] and accept a shard that signs with any of them. Links
// already authenticated stay up.
func (r *Backend) SetKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return errors.New("remote: set keys: at least one key")
	}
	keys = slices.Clone(keys)
	r.keys.Store(&keys)
	return nil
}
