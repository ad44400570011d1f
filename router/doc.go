// Package router decides which backend shard serves each device: the
// placement ring, the Placer hook and the canary rules that use it
// (rules.go: devices selected by HELLO tags and a sticky percentage go to
// the shards with the rule's labels), move planning between two rings,
// and per-shard circuit state.
//
// Placement is consistent hashing with bounded loads over partitions (the
// algorithm of github.com/buraksezer/consistent, see placement.go for why
// it is computed here and which of the library's pitfalls that avoids):
//
//	device id ──xxhash64──▶ h ──h mod PartitionCount──▶ partition ──table──▶ shard
//
// The table is built once per membership change by NewRing: every shard
// puts ReplicationFactor points on a hash circle, each partition goes to
// the first shard clockwise from its own hash that is still below the cap
// ceil(floor(P/N) × Load), partitions in id order.
//
// Invariants:
//   - a Ring is immutable and a pure function of its Config and shard set:
//     shards are sorted by name first, so every node that sees the same set,
//     in any order, builds the same table and the same Fingerprint;
//   - the Config (PartitionCount, ReplicationFactor, Load, Hasher) must be
//     identical on every node; PartitionCount can never change in a running
//     cluster (it would move almost every key);
//   - Ring.Owner, Router.Place with the Owner placer, Plan.Move and
//     Circuit.Allow allocate nothing and take no lock; the canary Rules
//     neither, once they have derived their rings from the current one;
//   - every Placer is deterministic: same rules, ring, device id and tags
//     give the same shard on every node;
//   - an empty ring answers ErrNoShards, a 503 protocol error;
//   - nothing here panics on membership input: bad shard sets and configs
//     are errors.
//
// Movement: adding a shard to N moves about 1/(N+1) of the keys (measured
// within 1.5× of it, TestAddShardMovement). Removing a shard moves its keys
// and, because the load cap grows as N shrinks, occasionally a few
// partitions between the shards that stay (well under 1 % of the keys,
// TestRemoveShardMovement); NewPlan lists exactly the keys whose owner
// changed, whatever the reason, so nothing is missed.
//
// Circuits: one per shard, Closed → Open (link queue full, link down) →
// HalfOpen (one probe after the cool-down) → Closed (probe succeeded) or
// back to Open. The state is one atomic word per shard; the set of circuits
// is a copy-on-write map.
//
// The package owns no goroutines and imports only the standard library,
// xxhash and protocol; membership reaches it through the Membership
// interface, never by importing cluster.
package router
