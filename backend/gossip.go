package backend

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/switchyard-gw/switchyard/router"
	"github.com/vmihailenco/msgpack/v5"
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

	mu     sync.Mutex
	node   *cluster.Node
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var (
	_ Announcer = (*gossip)(nil)
	_ Forwarder = (*gossip)(nil)
)

// ErrNotConnected: the ring places the device on this shard, but it has no
// session here.
var ErrNotConnected = errors.New("backend: device not connected")

// forward is a Push or Kick sent to the owning shard.
type forward struct {
	Kind     string `msgpack:"k"` // "push" or "kick"
	Device   string `msgpack:"d"`
	Payload  []byte `msgpack:"p,omitempty"`
	Reliable bool   `msgpack:"r,omitempty"`
	Code     int    `msgpack:"c,omitempty"`
	Reason   string `msgpack:"m,omitempty"`
}

func newGossip(srv *Server, cfg cluster.Config) (*gossip, error) {
	r, err := router.New(router.Config{}, nil)
	if err != nil {
		return nil, err
	}
	return &gossip{srv: srv, cfg: cfg, r: r}, nil
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
		Version: cfg.Meta.Version, Labels: cfg.Meta.Labels}
	if cfg.Logger == nil {
		cfg.Logger = g.srv.cfg.Logger
	}
	n, err := cluster.New(cfg)
	if err != nil {
		return err
	}
	if err := n.Start(ctx); err != nil {
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
		g.serveMessages(wctx)
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
	if _, _, _, err := g.r.Update(router.MembershipFunc(func() []router.Shard {
		var out []router.Shard
		for _, m := range g.node.ActiveShards() {
			out = append(out, router.Shard{Name: m.Meta.Shard, Addr: m.Meta.Link, Labels: m.Meta.Labels})
		}
		return out
	})); err != nil {
		g.srv.log.Error("ring not updated", "err", err)
	}
}

// serveMessages handles Push and Kick forwarded by other shards, for
// sessions on this one (no further forwarding: a device that moved meanwhile
// is not chased around the cluster).
func (g *gossip) serveMessages(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-g.node.Messages():
			if !ok {
				return
			}
			var f forward
			if msgpack.Unmarshal(m.Payload, &f) != nil {
				g.srv.stats.dropMalformed.Add(1)
				continue
			}
			s := g.srv.local(f.Device)
			if s == nil {
				continue
			}
			switch f.Kind {
			case "push":
				_ = s.Send(f.Payload, f.Reliable)
			case "kick":
				_ = s.Kick(f.Code, f.Reason)
			}
		}
	}
}

func (g *gossip) Push(deviceID string, payload []byte, reliable bool) error {
	return g.send(deviceID, &forward{Kind: "push", Device: deviceID, Payload: payload, Reliable: reliable})
}

func (g *gossip) Kick(deviceID string, code int, reason string) error {
	return g.send(deviceID, &forward{Kind: "kick", Device: deviceID, Code: code, Reason: reason})
}

// send hands f to the member that serves the device's shard.
func (g *gossip) send(deviceID string, f *forward) error {
	g.mu.Lock()
	n := g.node
	g.mu.Unlock()
	if n == nil {
		return ErrNotOwner
	}
	owner, err := g.r.Place(deviceID, nil)
	if err != nil {
		return fmt.Errorf("backend: forward to %s: %w", deviceID, err)
	}
	if owner.Name == g.srv.cfg.Shard {
		return ErrNotConnected
	}
	for _, m := range n.Members() {
		if m.Alive && m.Meta.Role == cluster.RoleBackend && m.Meta.Shard == owner.Name {
			p, err := msgpack.Marshal(f)
			if err != nil {
				return err
			}
			return n.SendTo(m.Name, p)
		}
	}
	return fmt.Errorf("backend: forward to %s: shard %s: %w", deviceID, owner.Name, ErrNotOwner)
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
