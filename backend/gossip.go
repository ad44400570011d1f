package backend

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/switchyard-gw/switchyard/router"
)

// gossip makes a shard a member of the cluster (Config.Gossip): it is the
// Server's Announcer (the node joins when the link listener is bound, its
// metadata says active or draining, it leaves at Close) and its Forwarder
// (Push and Kick for devices of other shards go to the owning shard as
// cluster messages, found through the same ring the gateways use).
//
// Goroutines: the node's own, one that rebuilds the ring from membership
// events and one that handles forwarded messages; both end at Leave.
type gossip struct {
	srv *Server
	cfg cluster.Config
	r   *router.Router
	// unl is the ring of the unlabelled shards when the ring holds both
	// labelled and unlabelled ones (nil otherwise): where a device no
	// canary rule selects may live (forward.go, probeTargets).
	unl atomic.Pointer[router.Ring]

	mu     sync.Mutex
	node   *cluster.Node
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// forwarding (forward.go): replies awaited by id, and the forwarded
	// calls retried until their session arrives (serveMessages only).
	wmu     sync.Mutex
	nextID  uint64
	waiting map[uint64]chan string
	retries []retry
}

var (
	_ Announcer = (*gossip)(nil)
	_ Forwarder = (*gossip)(nil)
)

// ErrNotConnected: the ring places the device on this shard, but it has no
// session here.
var ErrNotConnected = errors.New("backend: device not connected")

func newGossip(srv *Server, cfg cluster.Config) (*gossip, error) {
	r, err := router.New(router.Config{}, nil)
	if err != nil {
		return nil, err
	}
	return &gossip{srv: srv, cfg: cfg, r: r, waiting: map[uint64]chan string{}}, nil
}

func (g *gossip) Announce(ctx context.Context, a Announcement) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	state := cluster.StateActive
	if a.State != StateActive {
		state = cluster.StateDraining
	}
	switch {
	case g.node == nil && a.State == StateLeft:
		return nil
	case g.node == nil:
		return g.joinLocked(ctx, a, state)
	case a.State == StateLeft:
		err := g.node.Leave(ctx)
		g.cancel()
		g.wg.Wait()
		return err
	}
	return g.node.UpdateMeta(func(m *cluster.Meta) { m.State = state })
}

func (g *gossip) joinLocked(ctx context.Context, a Announcement, state cluster.State) error {
	cfg := g.cfg
	cfg.Meta = cluster.Meta{Role: cluster.RoleBackend, Shard: a.Shard, Link: a.Link, State: state,
		Version: cfg.Meta.Version, Labels: a.Labels}
	if cfg.Logger == nil {
		cfg.Logger = g.srv.cfg.Logger
	}
	n, err := cluster.New(cfg)
	if err != nil {
		return err
	}
	stop := watchJoin(g.srv.log, cfg.Seeds, g.srv.cfg.JoinWarning) // run.go
	err = n.Start(ctx)
	stop()
	if err != nil {
		return err
	}
	g.node = n
	wctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	g.updateRing()
	g.wg.Add(2)
	go func() {
		defer g.wg.Done()
		g.watch(wctx)
	}()
	go func() {
		defer g.wg.Done()
		g.serveMessages(wctx.Done())
	}()
	return nil
}

func (g *gossip) watch(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-g.node.Events():
			if !ok {
				return
			}
			g.updateRing()
		}
	}
}

func (g *gossip) updateRing() {
	_, cur, changed, err := g.r.Update(router.MembershipFunc(func() []router.Shard {
		var out []router.Shard
		for _, m := range g.node.ActiveShards() {
			out = append(out, router.Shard{Name: m.Meta.Shard, Addr: m.Meta.Link, Labels: m.Meta.Labels})
		}
		return out
	}))
	if err != nil {
		g.srv.log.Error("ring not updated", "err", err)
		return
	}
	if changed {
		g.unl.Store(unlabelledRing(cur))
	}
}

// unlabelled returns the ring of the unlabelled shards (see unl).
func (g *gossip) unlabelled() *router.Ring { return g.unl.Load() }

// unlabelledRing is the ring of r's unlabelled shards under r's config,
// nil unless r holds both labelled and unlabelled shards.
func unlabelledRing(r *router.Ring) *router.Ring {
	var plain []router.Shard
	for _, s := range r.Shards() {
		if len(s.Labels) == 0 {
			plain = append(plain, s)
		}
	}
	if len(plain) == 0 || len(plain) == r.Len() {
		return nil
	}
	u, err := router.NewRing(r.Config(), plain)
	if err != nil {
		return nil // cannot happen: a subset of a valid ring
	}
	return u
}

// probeTargets lists the shards, other than self, that may hold device's
// session under the gateways' canary rules (forward.go): none when no
// shard is labelled (every device is on its ring owner); otherwise the
// ring owner, the owner among the unlabelled shards (unl) and every
// labelled shard, each once.
func probeTargets(r, unl *router.Ring, device, self string) []string {
	var out []string
	add := func(name string) {
		if name != self && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	var labelled []string
	for _, s := range r.Shards() {
		if len(s.Labels) > 0 {
			labelled = append(labelled, s.Name)
		}
	}
	if len(labelled) == 0 {
		return nil
	}
	if o, err := r.Owner(device); err == nil {
		add(o.Name)
	}
	if o, err := unl.Owner(device); err == nil {
		add(o.Name)
	}
	for _, name := range labelled {
		add(name)
	}
	return out
}

// GossipAddr is the shard's gossip address once it joined ("" before, or
// without Config.Gossip), for others to join through.
func (srv *Server) GossipAddr() string {
	g, ok := srv.cfg.Announcer.(*gossip)
	if !ok {
		return ""
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.node == nil {
		return ""
	}
	return g.node.Addr()
}

// RingLen is how many active shards this shard's ring holds (0 without
// Config.Gossip).
func (srv *Server) RingLen() int {
	if g, ok := srv.cfg.Announcer.(*gossip); ok {
		return g.r.Ring().Len()
	}
	return 0
}
