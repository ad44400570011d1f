// Package counter is a stateful example backend, the one the migration
// tests use: every session counts its messages and remembers the seq of
// the last reliable one, and every reply is "<shard> <count>", so a test
// sees which shard served each message and that the count never skips or
// repeats when the session moves.
//
// The state lives in the session (Session.Set) and travels with it:
// Snapshot encodes it (12 bytes), OnOpen with OpenMigrated restores it.
// A resumed session keeps its state on the same shard.
package counter
