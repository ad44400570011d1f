package router

// Placer chooses the shard for a device when its session opens or moves.
// tags are the device's HELLO tags (e.g. "ver", "model"); r is the current
// ring. A Placer must be deterministic: every gateway must place the same
// device, with the same tags and ring, on the same shard, and must return
// ErrNoShards (or an error wrapping it) when it has nowhere to put it.
//
// The default, Owner, is the ring owner. The canary rules (NewRules,
// rules.go) are a Placer too: a rule selects devices by tags and/or a
// sticky hash percentage (a hash of the device id, so a device stays in or
// out of the canary across reconnects and gateways) and places them on the
// subset of the ring's shards whose Labels match the rule, falling back to
// the default placement when the subset is empty.
type Placer interface {
	Place(deviceID string, tags map[string]string, r *Ring) (Shard, error)
}

// PlacerFunc adapts a function to Placer.
type PlacerFunc func(deviceID string, tags map[string]string, r *Ring) (Shard, error)

// Place calls f.
func (f PlacerFunc) Place(deviceID string, tags map[string]string, r *Ring) (Shard, error) {
	return f(deviceID, tags, r)
}

// Owner is the default Placer: the ring owner of the device id, tags
// ignored. It allocates nothing.
var Owner Placer = ownerPlacer{}

type ownerPlacer struct{}

// Place returns r.Owner(deviceID).
func (ownerPlacer) Place(deviceID string, _ map[string]string, r *Ring) (Shard, error) {
	return r.Owner(deviceID)
}

var (
	_ Placer = ownerPlacer{}
	_ Placer = PlacerFunc(nil)
)
