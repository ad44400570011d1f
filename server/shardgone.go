package server

import (
	"errors"

	"github.com/switchyard-gw/switchyard/cluster"
)

// A shard that gossip reports gone (it left, or the cluster declared it
// failed) keeps no links on the gateway: a failed host may never send the
// RST that would end them, and its sessions would wait on a link nobody
// answers. The ring has already dropped the shard (the watcher rebuilds it
// first), so nothing dials it again unless it comes back.

// errShardGone is why the links of a shard that left the cluster closed.
var errShardGone = errors.New("server: shard left the cluster")

// memberGone drops the links of a backend member that gossip reports gone,
// unless another live member now serves the same shard at the same link
// address (a restart that gossip saw before the old life's leave).
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
	if n := g.remote.dropShard(m.Meta.Shard, m.Meta.Link); n > 0 {
		g.log.Warn("shard gone from the cluster: links closed", "shard", m.Meta.Shard, "addr", m.Meta.Link,
			"member", m.Name, "links", n)
	}
}

// dropShard closes the links to shard at addr and forgets the shard (no
// backoff, no redial), returning how many links it closed. Their sessions'
// devices get 503, as on any lost link.
func (r *remoteBackend) dropShard(shard, addr string) int {
	r.mu.Lock()
	sl := r.shards[shard]
	if sl == nil || sl.addr != addr {
		r.mu.Unlock()
		return 0
	}
	delete(r.shards, shard)
	delete(r.down, shard) // gossip has the last word now: the ring dropped it
	var links []*link
	for _, l := range sl.links {
		if l != nil {
			links = append(links, l)
		}
	}
	r.mu.Unlock()
	for _, l := range links {
		l.m.gone.Inc()
		l.fail(errShardGone)
	}
	return len(links)
}
