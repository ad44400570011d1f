package router

// Move is one key whose owner differs between two rings.
type Move struct {
	// Key is the device id.
	Key string
	// From is the key's owner in the old ring; the zero Shard when the old
	// ring was empty (the device was refused with 503).
	From Shard
	// To is the key's owner in the new ring; the zero Shard when the new
	// ring is empty (nowhere to move: the session waits or is closed).
	To Shard
}

// Plan compares two rings. Shards are compared by name: a shard that comes
// back under the same name at another address owns the same keys (its
// sessions are recovered as after a crash, not moved). Building a Plan
// costs one pass over the partitions when both rings share the partitioning
// (same PartitionCount and Hasher); Plan.Move then costs one hash and
// allocates nothing. A Plan is immutable and safe for concurrent use.
//
// A Plan compares ring owners only. With canary rules a placement also
// depends on the device's tags and the rules, so the gateway's mover asks
// the Placer for each live session instead (server/remote/move.go).
type Plan struct {
	old, new *Ring
	changed  []bool // per partition; nil when partitionings differ
	moved    int    // partitions whose owner changed
}

// NewPlan returns the plan for moving from old to new. Either may be nil
// or empty.
func NewPlan(old, new *Ring) *Plan {
	p := &Plan{old: old, new: new}
	if !samePartitioning(old, new) {
		return p
	}
	p.changed = make([]bool, nonEmpty(old, new).parts)
	for i := range p.changed {
		if partitionOwner(old, i) != partitionOwner(new, i) {
			p.changed[i] = true
			p.moved++
		}
	}
	return p
}

// samePartitioning reports whether keys map to the same partitions in a
// and b: same partition count and hasher, or one of them empty.
func samePartitioning(a, b *Ring) bool {
	if a.Len() == 0 || b.Len() == 0 {
		return a.Len() > 0 || b.Len() > 0
	}
	return a.parts == b.parts && a.fast && b.fast
}

// nonEmpty returns b if it has shards, else a.
func nonEmpty(a, b *Ring) *Ring {
	if b.Len() > 0 {
		return b
	}
	return a
}

// partitionOwner returns the name of the owner of partition p in r, or ""
// for an empty ring.
func partitionOwner(r *Ring, p int) string {
	if r.Len() == 0 {
		return ""
	}
	return r.shards[r.table[p]].Name
}

// Move reports whether key changes owner, and from which shard to which.
func (p *Plan) Move(key string) (Move, bool) {
	if p.changed != nil {
		if !p.changed[nonEmpty(p.old, p.new).partition(key)] {
			return Move{}, false
		}
	}
	from, _ := p.old.Owner(key)
	to, _ := p.new.Owner(key)
	if from.Name == to.Name {
		return Move{}, false
	}
	return Move{Key: key, From: from, To: to}, true
}

// PartitionFraction returns the fraction of partitions whose owner changes,
// the expected fraction of keys that move (-1 when the rings partition keys
// differently and only a per-key comparison can tell).
func (p *Plan) PartitionFraction() float64 {
	if p.changed == nil {
		if p.old.Len() == 0 && p.new.Len() == 0 {
			return 0
		}
		return -1
	}
	return float64(p.moved) / float64(len(p.changed))
}

// Moves returns the keys whose owner differs between old and new, in the
// order of keys.
func Moves(old, new *Ring, keys []string) []Move {
	p := NewPlan(old, new)
	var moves []Move
	for _, k := range keys {
		if m, ok := p.Move(k); ok {
			moves = append(moves, m)
		}
	}
	return moves
}

// MovedFraction returns the fraction of keys whose owner differs between
// old and new (0 for no keys).
func MovedFraction(old, new *Ring, keys []string) float64 {
	if len(keys) == 0 {
		return 0
	}
	p := NewPlan(old, new)
	n := 0
	for _, k := range keys {
		if _, ok := p.Move(k); ok {
			n++
		}
	}
	return float64(n) / float64(len(keys))
}
