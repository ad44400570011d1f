package server

import "github.com/switchyard-gw/switchyard/server/remote"

// Directory tells the gateway which backend shard owns a device's session
// and where that shard's link listener is (Config.Backends). The cluster
// wiring builds one from gossip and the router's ring; tests use static
// ones.
type Directory = remote.Directory

// Placement is where a Directory puts a device: shard, link address and
// the canary rule that selected it.
type Placement = remote.Placement

// ErrNoShard is what a Directory returns when no shard can take a device;
// the device gets 503.
var ErrNoShard = remote.ErrNoShard

// Errors of the links to backend shards.
var (
	ErrLinkAuth   = remote.ErrLinkAuth
	ErrLinkClosed = remote.ErrLinkClosed
)

// Defaults of the links to backend shards.
const (
	DefaultMaxLinkQueue  = remote.DefaultMaxLinkQueue  // bytes queued on one link
	DefaultLinksPerShard = remote.DefaultLinksPerShard // links from a gateway to each shard
)

// Rebalance moves every session of this gateway whose shard is not the one
// the Directory names for its device any more, at most MoveRate a second,
// with its device still connected (server/remote). The cluster wiring
// calls it when the ring changes; a gateway with a static Directory calls
// it after the Directory changed.
func (g *Gateway) Rebalance() {
	if g.remote != nil {
		g.remote.Rebalance()
	}
}

// ConnectShards opens links to every shard in shards (name → link address)
// that has none, so that a Publish from any shard reaches this gateway's
// subscribers. The cluster wiring calls it when the ring changes.
func (g *Gateway) ConnectShards(shards map[string]string) {
	if g.remote != nil {
		g.remote.ConnectShards(shards)
	}
}

// linkName names this gateway to shards: the node name and the device
// address, unique even for several gateways on one host (shards send a
// Publish once per gateway name).
func (g *Gateway) linkName() string { return g.cfg.Node + "@" + g.Addr().String() }

// devices lists the connections that have a session attached, for the
// shard side's mover.
func (g *Gateway) devices() []remote.Device {
	conns := g.sessions.conns()
	out := make([]remote.Device, len(conns))
	for i, c := range conns {
		out[i] = c
	}
	return out
}
