package remote

import (
	"time"

	"github.com/switchyard-gw/switchyard/router"
)

// Fast failover. Gossip needs about 6 s (memberlist's LAN timings) to agree
// that a crashed shard is dead, while a gateway sees its links to that
// shard fail at once (RST from a killed process) or within LinkTimeout (a
// host gone silent). So a gateway takes a shard out of its own ring as soon
// as the shard's last authenticated link failed: the devices whose links
// broke get 503, resume, and are placed on the shard the ring names next,
// without waiting for gossip. Gossip confirms later: a dead member leaves
// the active set (and shardgone.go forgets its links).
//
// It is a local view, and fenced like any other: the shard that is down for
// this gateway may be alive for the others (a partition), and the session
// a device opens elsewhere meanwhile carries its own binding and epoch.
// The gateway keeps redialing a down shard with the links' backoff (the
// ring watcher's tick); once a link has stayed up for LinkTimeout the
// shard is back in the ring, and the mover (move.go) brings the sessions
// the ring names for it back to it.
//
// Only a link that had authenticated counts: a shard that never answered
// (a wrong key, a port not yet open) is not taken down, nor is one whose
// links closed because the gateway closes.

// shardDown takes l's shard out of this gateway's ring: l was its last
// authenticated link.
func (r *Backend) shardDown(l *link) {
	l.m.shardDown.Inc()
	r.log.Warn("shard down: every link lost, out of the ring until a link is back",
		"shard", l.shard, "addr", l.addr)
	r.cfg.ShardsChanged()
}

// BringBack puts the down shards whose links have stayed up for
// LinkTimeout back in the ring. The hold-down keeps a shard that answers
// only now and then (a starved process, a lossy path) out, instead of
// flapping the ring, and the sessions with it, on every link it manages
// to authenticate.
func (r *Backend) BringBack(now time.Time) {
	var back []string
	r.mu.Lock()
	for shard := range r.down {
		if sl := r.shards[shard]; sl != nil && sl.up > 0 && now.Sub(sl.upSince) >= r.cfg.LinkTimeout {
			delete(r.down, shard)
			back = append(back, shard)
		}
	}
	r.mu.Unlock()
	for _, shard := range back {
		r.log.Info("shard back: a link stayed up", "shard", shard)
	}
	if len(back) > 0 {
		r.cfg.ShardsChanged()
	}
}

// isDown reports whether shard is down for this gateway.
func (r *Backend) isDown(shard string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.down[shard]
}

// AnyDown reports whether a shard is down for this gateway.
func (r *Backend) AnyDown() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.down) > 0
}

// WithoutDown removes the shards that are down for this gateway (the
// gateway builds its ring from what it returns).
func (r *Backend) WithoutDown(shards []router.Shard) []router.Shard {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.down) == 0 {
		return shards
	}
	out := shards[:0:0]
	for _, s := range shards {
		if !r.down[s.Name] {
			out = append(out, s)
		}
	}
	return out
}

// RedialDown dials the down shards that gossip still lists as active (a
// slot at a time, as the backoff allows); the ring watcher calls it on its
// tick.
func (r *Backend) RedialDown(active []router.Shard) {
	for _, s := range active {
		if r.isDown(s.Name) {
			r.linkTo(s.Name, s.Addr, 0)
		}
	}
}
