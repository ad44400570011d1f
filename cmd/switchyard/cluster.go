package main

import (
	"context"
	"crypto/sha256"
	"log/slog"

	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/switchyard-gw/switchyard/router"
	"github.com/switchyard-gw/switchyard/server"
)

// clusterKeys derives the keys of a cluster from the lines of its key file:
// gossip encryption wants exactly 32 bytes, so each secret is hashed for it;
// links and resume tokens use the secrets as they are (the first signs,
// every one verifies, so a key can be rotated line by line).
func clusterKeys(secrets [][]byte) (gossip [][]byte, links [][]byte) {
	for _, s := range secrets {
		h := sha256.Sum256(append([]byte("switchyard-gossip\x00"), s...))
		gossip = append(gossip, h[:])
	}
	return gossip, secrets
}

// shardDirectory places devices on the active backend shards that gossip
// reports, through the router's ring.
type shardDirectory struct{ r *router.Router }

var _ server.Directory = shardDirectory{}

func (d shardDirectory) Owner(deviceID string) (string, string, error) {
	s, err := d.r.Place(deviceID, nil)
	if err != nil {
		return "", "", server.ErrNoShard
	}
	return s.Name, s.Addr, nil
}

// shardAddrs maps the ring's shards to their link addresses.
func shardAddrs(r *router.Ring) map[string]string {
	m := map[string]string{}
	if r == nil {
		return m
	}
	for _, s := range r.Shards() {
		m[s.Name] = s.Addr
	}
	return m
}

// activeShards lists the backend shards that take new sessions.
func activeShards(n *cluster.Node) []router.Shard {
	var out []router.Shard
	for _, m := range n.Members() {
		if m.Alive && m.Meta.Role == cluster.RoleBackend && m.Meta.State == cluster.StateActive &&
			m.Meta.Shard != "" && m.Meta.Link != "" {
			out = append(out, router.Shard{Name: m.Meta.Shard, Addr: m.Meta.Link, Labels: m.Meta.Labels})
		}
	}
	return out
}

// watchShards keeps r's ring equal to the active shards until ctx ends or
// the node closes. It runs on the one goroutine that reads the node's
// events (the cluster package delivers them there and nowhere else).
// onChange, if not nil, is called with every new ring.
func watchShards(ctx context.Context, n *cluster.Node, r *router.Router, log *slog.Logger, onChange func(*router.Ring)) {
	update := func() {
		_, cur, changed, err := r.Update(router.MembershipFunc(func() []router.Shard { return activeShards(n) }))
		switch {
		case err != nil:
			log.Error("ring not updated", "err", err)
		case changed:
			log.Info("ring changed", "shards", cur.Len())
			if onChange != nil {
				onChange(cur)
			}
		}
	}
	update()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-n.Events():
			if !ok {
				return
			}
			update()
		}
	}
}
