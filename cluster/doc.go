// Package cluster is Switchyard's gossip membership: every gateway and
// backend shard runs one Node, a hashicorp/memberlist member whose
// metadata (Meta) says its role, shard, link address, state (active or
// draining), version and labels. The router derives the ring of active
// backend shards from it; this package knows nothing about rings.
//
// Lifecycle:
//
//	New(cfg)      validate; starts nothing
//	Start(ctx)    bind gossip TCP+UDP (port 0 works, Addr reports it),
//	              announce Meta, join the seeds (retry with backoff until
//	              ctx ends; no seeds: a new cluster)
//	UpdateMeta    change Meta and wait for the broadcast (SetDraining)
//	Leave(ctx)    draining → wait for it to spread → memberlist Leave →
//	              Close: the others see Update(draining) then Leave
//	Close(ctx)    memberlist Shutdown without leave (looks like a crash),
//	              close Events and Messages, wait for our goroutines
//
// Membership changes reach one consumer through Events. memberlist calls
// its EventDelegate with its node lock held, so the callbacks here only
// record the change in a queue holding at most one pending event per
// member (newer changes coalesce into it) and return: they never block and
// never call memberlist (which would deadlock). A dispatcher goroutine
// feeds the queue to the channel.
//
// User messages: SendTo sends reliably over TCP; received ones come out
// of Messages (bounded; overflow is dropped and counted, never blocking
// memberlist's receive loop).
//
// Security: gossip is encrypted with Config.Keys (a keyring, so keys can
// rotate) and tagged with Config.Label; a node with a wrong key or another
// label cannot join (its Start fails with ErrJoin) and its packets are
// dropped. Metadata from the network is decoded defensively (DecodeMeta,
// fuzzed): it never panics and never allocates more than its size.
//
// Goroutines owned by a Node: the event dispatcher, which Close waits for.
// memberlist runs its own (listeners, probe and gossip tickers, stream
// handlers); Close shuts memberlist down, after which a few of its
// helpers may still run briefly (see Close).
//
// Lock order: Node.mu → Node.mlMu; Node.updateMu is held across
// memberlist's UpdateNode; view.mu and Node.msgMu are leaves taken inside
// memberlist callbacks and never held while calling memberlist. NodeMeta
// reads an atomic pointer, no lock at all.
package cluster
