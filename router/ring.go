package router

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unsafe"

	"github.com/cespare/xxhash/v2"
)

// Ring is an immutable placement snapshot: which shard owns which partition
// of the device-id space. Build a new Ring whenever membership changes and
// swap it in (Router does this); a Ring is safe for concurrent use.
//
// A Ring is a pure function of the Config and the set of shards: NewRing
// sorts the shards by name before placing them, so every node that sees the
// same shard set, in any order, builds the same partition table and the
// same Fingerprint.
type Ring struct {
	cfg    Config  // with defaults
	fast   bool    // cfg.Hasher is XXHash: hash with xxhash.Sum64String
	parts  uint64  // cfg.PartitionCount
	shards []Shard // sorted by Name, Labels copied
	table  []int32 // partition → index into shards
	fp     uint64  // Fingerprint
}

// NewRing validates cfg and places the partitions on shards with
// consistent hashing with bounded loads. shards may come in any order and
// is not retained. It returns ErrInvalidShard for an empty name,
// ErrDuplicateShard for a repeated name and ErrCapacity when the shards
// cannot hold every partition under the load bound (more shards than
// partitions). An empty shard set gives an empty ring whose Owner returns
// ErrNoShards.
func NewRing(cfg Config, shards []Shard) (*Ring, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	sorted, err := sortShards(shards)
	if err != nil {
		return nil, err
	}
	r := &Ring{
		cfg:    cfg,
		parts:  uint64(cfg.PartitionCount),
		shards: sorted,
	}
	_, r.fast = cfg.Hasher.(XXHash)
	if len(sorted) > 0 {
		if r.table, err = place(cfg, sorted); err != nil {
			return nil, err
		}
	}
	r.fp = fingerprint(cfg, sorted)
	return r, nil
}

// sortShards returns a copy of shards sorted by name, with their labels
// copied, after checking names are present and unique.
func sortShards(shards []Shard) ([]Shard, error) {
	sorted := make([]Shard, len(shards))
	for i, s := range shards {
		if s.Name == "" {
			return nil, fmt.Errorf("%w: empty name (addr %q)", ErrInvalidShard, s.Addr)
		}
		s.Labels = maps.Clone(s.Labels)
		sorted[i] = s
	}
	slices.SortFunc(sorted, func(a, b Shard) int { return strings.Compare(a.Name, b.Name) })
	for i := 1; i < len(sorted); i++ {
		if sorted[i].Name == sorted[i-1].Name {
			return nil, fmt.Errorf("%w: %q (%s and %s)", ErrDuplicateShard,
				sorted[i].Name, sorted[i-1].Addr, sorted[i].Addr)
		}
	}
	return sorted, nil
}

// Owner returns the shard that owns deviceID, or ErrNoShards when the ring
// is empty (or nil). It allocates nothing and takes no lock.
func (r *Ring) Owner(deviceID string) (Shard, error) {
	if r.Len() == 0 {
		return Shard{}, ErrNoShards
	}
	return r.shards[r.table[r.partition(deviceID)]], nil
}

// partition returns the partition of key, exactly as consistent.LocateKey
// computes it: Hasher.Sum64(key) mod PartitionCount.
//
// The key is hashed in place, without the copy that []byte(key) would make:
// the bytes of a string are immutable and Hasher's contract forbids
// modifying or keeping them, so handing the hasher a read-only view of them
// for the duration of the call is safe. (consistent itself never sees the
// key: the partition table was copied out of it by place.) xxhash's
// Sum64String makes the same view internally.
func (r *Ring) partition(key string) int {
	var h uint64
	if r.fast {
		h = xxhash.Sum64String(key)
	} else {
		h = r.cfg.Hasher.Sum64(unsafe.Slice(unsafe.StringData(key), len(key)))
	}
	return int(h % r.parts)
}

// Len returns the number of shards in the ring; 0 for a nil ring.
func (r *Ring) Len() int {
	if r == nil {
		return 0
	}
	return len(r.shards)
}

// Shards returns a copy of the ring's shards sorted by name. The Labels
// maps are the ring's own: do not modify them.
func (r *Ring) Shards() []Shard {
	if r == nil {
		return nil
	}
	return slices.Clone(r.shards)
}

// Shard returns the ring's shard called name.
func (r *Ring) Shard(name string) (Shard, bool) {
	if r == nil {
		return Shard{}, false
	}
	i, ok := slices.BinarySearchFunc(r.shards, name, func(s Shard, n string) int {
		return cmp.Compare(s.Name, n)
	})
	if !ok {
		return Shard{}, false
	}
	return r.shards[i], true
}

// Loads returns the number of partitions each shard owns, by name.
func (r *Ring) Loads() map[string]int {
	loads := make(map[string]int, r.Len())
	if r == nil {
		return loads
	}
	for _, i := range r.table {
		loads[r.shards[i].Name]++
	}
	return loads
}

// Config returns the configuration the ring was built with, defaults
// filled in.
func (r *Ring) Config() Config { return r.cfg }

// Fingerprint identifies the ring: a 64-bit xxhash of the placement config
// and of the sorted shards (name, address, labels). Two nodes whose rings
// have the same fingerprint place every device the same way; gateways
// compare it (gossip, admin API) to see when their views agree.
func (r *Ring) Fingerprint() uint64 {
	if r == nil {
		return 0
	}
	return r.fp
}

// String describes the ring for logs: shard count and fingerprint.
func (r *Ring) String() string {
	return fmt.Sprintf("ring(%d shards, %016x)", r.Len(), r.Fingerprint())
}
