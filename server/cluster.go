package server

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/switchyard-gw/switchyard/internal/admin"
	"github.com/switchyard-gw/switchyard/router"
)

// The gateway in a cluster: it joins the gossip as a gateway, keeps a ring
// of the active backend shards (router), places every session on the shard
// the ring and the canary rules name (canary.go), and keeps a link to
// every shard so that publishes reach its subscribers.
//
// Goroutines: the node's own (cluster package) and one watcher that reads
// the node's events and rebuilds the ring; Close stops both after the
// drain.

// ClusterConfig joins a gateway to a cluster. Its zero fields take the
// cluster package's defaults; Meta is filled in by the gateway.
type ClusterConfig = cluster.Config

// gossip is a gateway's membership in the cluster.
type gossip struct {
	node   *cluster.Node
	router *router.Router
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// downs tells the watcher that a shard may have gone down for this
	// gateway (refreshRing): it redials only while one is, instead of
	// waking the process four times a second for nothing.
	downs chan struct{}
}

// joinCluster starts the gateway's gossip node and its ring watcher.
func (g *Gateway) joinCluster(ctx context.Context) error {
	ccfg := *g.cfg.Cluster
	ccfg.Meta = cluster.Meta{Role: cluster.RoleGateway, Link: g.Addr().String(), Version: g.cfg.Version,
		Admin: g.AdminAddr()}
	if ccfg.Logger == nil {
		ccfg.Logger = g.cfg.Logger
	}
	node, err := cluster.New(ccfg)
	if err != nil {
		return fmt.Errorf("server: cluster: %w", err)
	}
	if err := node.Start(ctx); err != nil {
		return fmt.Errorf("server: cluster: %w", err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	gs := &gossip{node: node, router: g.ring, log: g.log.With("component", "ring"), cancel: cancel, downs: make(chan struct{}, 1)}
	g.gossip = gs
	gs.update(g)
	gs.wg.Add(1)
	go func() {
		defer gs.wg.Done()
		gs.watch(wctx, g)
	}()
	return nil
}

// redialTick is how often the ring watcher redials the shards that are
// down for this gateway (each link still waits out its backoff). It ticks
// only while one is.
const redialTick = 250 * time.Millisecond

// watch rebuilds the ring on every membership event, on the one goroutine
// that reads them, and drops the links of shards that are gone
// (memberGone).
func (gs *gossip) watch(ctx context.Context, g *Gateway) {
	anyDown := func() bool { return g.remote != nil && g.remote.AnyDown() } // server/remote/failover.go
	var tick *time.Ticker
	var tickC <-chan time.Time // nil (never ready) while no shard is down
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	redialing := func(on bool) {
		switch {
		case on && tick == nil:
			tick = time.NewTicker(redialTick)
			tickC = tick.C
		case !on && tick != nil:
			tick.Stop()
			tick, tickC = nil, nil
		}
	}
	redialing(anyDown())
	for {
		select {
		case <-ctx.Done():
			return
		case <-gs.downs:
			redialing(anyDown())
		case <-tickC:
			if anyDown() {
				g.remote.RedialDown(ActiveShards(gs.node))
				g.remote.BringBack(time.Now())
			}
			redialing(anyDown())
		case m, ok := <-gs.node.Messages():
			if !ok {
				return
			}
			g.onMessage(m)
		case ev, ok := <-gs.node.Events():
			if !ok {
				return
			}
			gs.update(g)
			if ev.Kind == cluster.EventLeave {
				gs.memberGone(g, ev.Member)
			}
		}
	}
}

// update rebuilds the ring from the active shards in gossip, less those
// that are down for this gateway (server/remote/failover.go). Safe from
// any goroutine: the router serialises its updates.
func (gs *gossip) update(g *Gateway) {
	_, cur, changed, err := gs.router.Update(router.MembershipFunc(func() []router.Shard {
		shards := ActiveShards(gs.node)
		if g.remote != nil {
			shards = g.remote.WithoutDown(shards)
		}
		return shards
	}))
	switch {
	case err != nil:
		gs.log.Error("ring not updated", "err", err)
	case changed:
		gs.log.Info("ring changed", "shards", cur.Len())
		addrs := map[string]string{}
		for _, s := range cur.Shards() {
			addrs[s.Name] = s.Addr
		}
		g.ConnectShards(addrs)
		g.Rebalance()
	}
}

// refreshRing rebuilds the ring now (gossip or a link changed what this
// gateway can reach).
func (g *Gateway) refreshRing() {
	if g.gossip != nil {
		g.gossip.update(g)
		select {
		case g.gossip.downs <- struct{}{}:
		default:
		}
	}
}

// memberGone drops the links of a backend member that gossip reports gone,
// unless another live member now serves the same shard at the same link
// address (a restart that gossip saw before the old life's leave). A
// failed host may never send the RST that would end them
// (server/remote/shardgone.go).
func (gs *gossip) memberGone(g *Gateway, m cluster.Member) {
	if g.remote == nil || m.Meta.Role != cluster.RoleBackend || m.Meta.Shard == "" {
		return
	}
	for _, o := range gs.node.Members() {
		if o.Alive && o.Name != m.Name && o.Meta.Role == cluster.RoleBackend &&
			o.Meta.Shard == m.Meta.Shard && o.Meta.Link == m.Meta.Link {
			return
		}
	}
	if n := g.remote.DropShard(m.Meta.Shard, m.Meta.Link); n > 0 {
		g.log.Warn("shard gone from the cluster: links closed", "shard", m.Meta.Shard, "addr", m.Meta.Link,
			"member", m.Name, "links", n)
	}
}

// leave leaves the gossip (after the drain) and stops the watcher.
func (gs *gossip) leave(ctx context.Context) {
	_ = gs.node.Leave(ctx)
	gs.cancel()
	gs.wg.Wait()
}

// ActiveShards lists the backend shards that take new sessions, as the
// gossip sees them.
func ActiveShards(n *cluster.Node) []router.Shard {
	var out []router.Shard
	for _, m := range n.ActiveShards() {
		out = append(out, router.Shard{Name: m.Meta.Shard, Addr: m.Meta.Link, Labels: m.Meta.Labels})
	}
	return out
}

// Shards is how many active backend shards the gateway's ring holds (0
// without Cluster).
func (g *Gateway) Shards() int {
	if g.ring == nil {
		return 0
	}
	return g.ring.Ring().Len()
}

// GossipAddr is the gateway's gossip address ("" without Cluster), for
// others to join through.
func (g *Gateway) GossipAddr() string {
	if g.gossip == nil {
		return ""
	}
	return g.gossip.node.Addr()
}

// writeClusterMetrics writes, at each scrape of a gateway in a cluster,
// what gossip and the ring look like from here: members by role and
// state (a member gone from gossip counts as "gone" while it is still
// listed), the ring's size and its fingerprint. Two gateways whose
// switchyard_ring_info fingerprints differ place devices differently: a
// ring disagreement to alert on.
func (g *Gateway) writeClusterMetrics(w io.Writer) {
	if !g.adm.up.Load() || g.gossip == nil || g.ring == nil {
		return // not in a cluster, or not started: gossip is set by Start
	}
	type key struct{ role, state string }
	count := map[key]int{}
	for _, role := range []cluster.Role{cluster.RoleGateway, cluster.RoleBackend} {
		for _, st := range []string{"active", "draining", "gone"} {
			count[key{role.String(), st}] = 0 // present at 0, so that alerts see the series
		}
	}
	for _, m := range g.gossip.node.Members() {
		st := m.Meta.State.String()
		if !m.Alive {
			st = "gone"
		}
		count[key{m.Meta.Role.String(), st}]++
	}
	keys := make([]key, 0, len(count))
	for k := range count {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int { return cmp.Or(cmp.Compare(a.role, b.role), cmp.Compare(a.state, b.state)) })
	for _, k := range keys {
		metrics.WriteGaugeUint64(w, `switchyard_cluster_members{role="`+admin.Escape(k.role)+`",state="`+admin.Escape(k.state)+`"}`,
			uint64(count[k]))
	}
	r := g.ring.Ring()
	metrics.WriteGaugeUint64(w, "switchyard_ring_shards", uint64(r.Len()))
	metrics.WriteGaugeUint64(w, fmt.Sprintf(`switchyard_ring_info{fingerprint="%016x"}`, r.Fingerprint()), 1)
}
