package remote

import "github.com/switchyard-gw/switchyard/router"

// Directory tells the gateway which backend shard owns a device's session
// and where that shard's link listener is. The cluster wiring builds one
// from gossip and the router's ring and canary rules (RingDirectory);
// tests use static ones.
type Directory interface {
	// Owner places the device with its HELLO tags (nil when it sent
	// none). The shard side asks at every open, at every mover pass (to
	// see whether the session's shard changed) and when a move or a
	// recovery picks the new shard, always with the tags of the session's
	// current HELLO, so a Directory must be deterministic.
	Owner(deviceID string, tags map[string]string) (Placement, error)
}

// Placement is where a Directory puts a device.
type Placement struct {
	// Shard names the shard; Addr is its link address.
	Shard, Addr string
	// Rule is the canary rule that selected the device ("" when none);
	// Fallback: no shard carries that rule's labels, so the device went
	// to the default placement. Counted in
	// switchyard_canary_placements_total.
	Rule     string
	Fallback bool
}

// ShardSet is implemented by a Directory that knows which shards it
// places on now (RingDirectory: the shards of its ring). The mover asks
// it whether a session's shard is still there, to count a move's cause.
type ShardSet interface {
	HasShard(name string) bool
}

// RingDirectory places devices on the shards of r's current ring, by its
// current Placer (the canary rules).
func RingDirectory(r *router.Router) Directory { return ringDirectory{r} }

type ringDirectory struct{ r *router.Router }

var (
	_ Directory = ringDirectory{}
	_ ShardSet  = ringDirectory{}
)

func (d ringDirectory) HasShard(name string) bool {
	_, ok := d.r.Ring().Shard(name)
	return ok
}

func (d ringDirectory) Owner(deviceID string, tags map[string]string) (Placement, error) {
	p, err := d.r.Placement(deviceID, tags)
	if err != nil {
		return Placement{}, ErrNoShard
	}
	return Placement{Shard: p.Shard.Name, Addr: p.Shard.Addr, Rule: p.Rule, Fallback: p.Fallback}, nil
}
