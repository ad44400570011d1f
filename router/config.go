package router

import (
	"fmt"
	"math"

	"github.com/cespare/xxhash/v2"
)

// Defaults. Every Config field left at its zero value takes one of these.
const (
	// DefaultPartitionCount is the number of partitions keys are hashed
	// into; shards own partitions, not keys. It must stay well above the
	// largest shard count because bounded loads work at partition
	// granularity: with P partitions and N shards a shard's cap is
	// ceil(floor(P/N) × Load) partitions, so at 200 shards 4093 gives about
	// 20 partitions per shard and a cap of 25 (one partition = 5 % of a
	// shard's share), while at 10 shards one partition is 0.25 %. It is the
	// largest prime below 4096 (a prime keeps hash % P from echoing any
	// regularity of the hash); the partition table then costs 16 KB per
	// ring and placing them costs about 0.5 ms. It can never change in
	// a running cluster: a different count moves almost every key.
	DefaultPartitionCount = 4093
	// DefaultReplicationFactor is the number of points per shard on the
	// hash circle. More points even out the arcs, so the load cap binds
	// less often and fewer partitions spill on a membership change.
	// Measured over 100,000 device ids and five naming schemes
	// (move_test.go): at 64 points adding a shard moved up to 1.37× the
	// ideal 1/N and removing one moved up to 1.5 % of the keys between
	// shards that stayed; at 160, 1.25× and 0.16 %. A 200-shard ring of
	// 32,000 points builds in about 8 ms.
	DefaultReplicationFactor = 160
	// DefaultLoad is the bounded-load factor: no shard holds more than
	// ceil(floor(P/N) × Load) partitions (the paper's 1 + ε with ε = 0.25).
	DefaultLoad = 1.25
)

// Limits checked by Validate.
const (
	// MinReplicationFactor: with a single point per shard the ring library
	// can skip the only point of the one shard that still has room and
	// panic (consistent's search stops one point short of a full turn).
	MinReplicationFactor = 2
	// MaxReplicationFactor bounds the build cost (N × RF points).
	MaxReplicationFactor = 1024
	// MaxPartitionCount bounds the build cost and the table size.
	MaxPartitionCount = 1 << 20
)

// Hasher hashes a byte slice to 64 bits. It must be deterministic across
// processes and versions, must not modify b and must not keep it after
// returning: Ring.Owner passes it the bytes of a string without copying.
// It is the consistent.Hasher interface.
type Hasher interface {
	Sum64(b []byte) uint64
}

// XXHash is the default Hasher: xxHash64, fast and well mixed in every bit,
// which hash % PartitionCount and the hash circle both need. Plain FNV-1a
// mixes its high bits poorly and moves about twice the keys it should on a
// membership change (TestHasherMovement).
type XXHash struct{}

// Sum64 returns the xxHash64 of b.
func (XXHash) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

// Config configures placement. It must be identical on every gateway and
// backend of a cluster (Ring.Fingerprint covers it); the zero value means
// the defaults above.
type Config struct {
	// PartitionCount is the number of partitions (see
	// DefaultPartitionCount). It must be at least the largest shard count
	// the cluster will ever have; NewRing refuses more shards than this.
	PartitionCount int
	// ReplicationFactor is the number of points per shard on the hash
	// circle, between MinReplicationFactor and MaxReplicationFactor.
	ReplicationFactor int
	// Load is the bounded-load factor, greater than 1 and finite; the plan
	// calls for 1.25 (DefaultLoad). Values close to 1 balance tightly but
	// spill more partitions (more keys move) on every membership change; a
	// value of at least the shard count disables the bound (plain
	// consistent hashing).
	Load float64
	// Hasher hashes device ids and ring points; nil means XXHash. Every
	// node must use the same function.
	Hasher Hasher
}

// withDefaults returns c with every zero field replaced by its default.
func (c Config) withDefaults() Config {
	if c.PartitionCount == 0 {
		c.PartitionCount = DefaultPartitionCount
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = DefaultReplicationFactor
	}
	if c.Load == 0 {
		c.Load = DefaultLoad
	}
	if c.Hasher == nil {
		c.Hasher = XXHash{}
	}
	return c
}

// Validate reports the first field that is out of range, after defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.PartitionCount < 1 || c.PartitionCount > MaxPartitionCount:
		return fmt.Errorf("%w: partition count %d not in [1, %d]",
			ErrInvalidConfig, c.PartitionCount, MaxPartitionCount)
	case c.ReplicationFactor < MinReplicationFactor || c.ReplicationFactor > MaxReplicationFactor:
		return fmt.Errorf("%w: replication factor %d not in [%d, %d]",
			ErrInvalidConfig, c.ReplicationFactor, MinReplicationFactor, MaxReplicationFactor)
	case math.IsNaN(c.Load) || math.IsInf(c.Load, 0) || c.Load <= 1:
		return fmt.Errorf("%w: load %v must be finite and above 1", ErrInvalidConfig, c.Load)
	}
	return nil
}
