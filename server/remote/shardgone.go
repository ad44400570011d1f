package remote

// A shard that gossip reports gone (it left, or the cluster declared it
// failed) keeps no links on the gateway: a failed host may never send the
// RST that would end them, and its sessions would wait on a link nobody
// answers. The ring has already dropped the shard (the watcher rebuilds it
// first), so nothing dials it again unless it comes back. The gateway's
// ring watcher decides that a member is gone (server/cluster.go) and calls
// DropShard.

// DropShard closes the links to shard at addr and forgets the shard (no
// backoff, no redial), returning how many links it closed. Their sessions'
// devices get 503, as on any lost link.
func (r *Backend) DropShard(shard, addr string) int {
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
