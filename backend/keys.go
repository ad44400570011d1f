package backend

import (
	"errors"
	"fmt"
	"slices"
)

// SetClusterKeys replaces the keys while the shard runs (a configuration
// reload, so keys rotate without a restart): links, the first key signs
// and any verifies, for links authenticated from now on (live links stay
// up); gossipKeys, when the shard gossips (Config.Gossip) and they are
// not nil, become the gossip keyring (cluster.Node.SetKeys: the first
// encrypts, every key decrypts). Rotate in three rounds over every member
// of the cluster: add the new key second, make it first, drop the old one.
func (srv *Server) SetClusterKeys(links, gossipKeys [][]byte) error {
	if len(links) == 0 {
		return errors.New("backend: set keys: at least one link key")
	}
	for i, k := range links {
		if len(k) < minKeyLen {
			return fmt.Errorf("backend: set keys: key %d: want at least %d bytes", i, minKeyLen)
		}
	}
	if g, ok := srv.cfg.Announcer.(*gossip); ok && gossipKeys != nil {
		if err := g.setKeys(gossipKeys); err != nil {
			return err
		}
	}
	links = slices.Clone(links)
	srv.keys.Store(&links)
	return nil
}

// clusterKeys are the link keys in use: Config.ClusterKeys, then the last
// SetClusterKeys.
func (srv *Server) clusterKeys() [][]byte { return *srv.keys.Load() }

// setKeys installs the gossip keyring: on the node once it runs, in the
// config it will start with before that.
func (g *gossip) setKeys(keys [][]byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.node == nil {
		g.cfg.Keys = slices.Clone(keys)
		return nil
	}
	return g.node.SetKeys(keys)
}
