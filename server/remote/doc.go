// Package remote is the gateway's shard side: it sends the sessions of a
// gateway's devices to the backend shards of a cluster over authenticated
// multiplexed links (docs/links.md), keeps the links and the shards'
// circuits, fans Publish out to local subscribers, takes a shard out of
// the gateway's ring when its last link fails, and moves live sessions
// between shards when the ring changes. Package server, the device side,
// terminates the device connections and uses this package through a
// narrow interface; this package never imports server.
//
// The name: it is the gateway's remote backend (as opposed to the
// embedded echo), and every type in it is about the far end of a link.
//
// # The boundary
//
// The device side gives the shard side one Device per device connection
// (server's conn) and holds, for it, one *Binding: the link, the epoch
// and the move flag of the session's binding to its shard, opaque to the
// device side. The device side calls, in frame order and with the
// connection's frame lock held,
//
//	Backend.Open(d, hello, resumed)   after a good HELLO
//	Backend.Data(d, frame)            upstream DATA
//	Backend.Ack(d, seq)               the device's cumulative ACK
//	Backend.Flush(d)                  at the end of each batch of frames: Data and Ack only stage
//	Backend.Closed(d)                 once, when the connection ended
//
// which are the methods of the embedded echo backend too (the device side
// selects one of the two at New). The shard side answers through Device:
// Opened (under Lock) completes the handshake, WriteFrames (a link
// reader's staged frames), Queue and Flush deliver downstream frames, Fail
// ends the connection with an ERROR code. The
// cluster wiring (server/cluster.go) calls ConnectShards, Rebalance,
// WithoutDown, AnyDown, RedialDown, BringBack and DropShard; the shard
// side calls back Config.Devices (the mover's pass) and
// Config.ShardsChanged (rebuild the ring).
//
// # Links
//
//	senders ──lock mu──▶ append envelope to out ──wake──▶ writer goroutine: one write per batch
//	device handlers: stage Up/DownAck, append them and wake once per batch (Flush)
//	reader goroutine ◀── envelopes ── dispatch to the bound Device by session id
//
// A session always uses the link slot its id hashes to, so its frames stay
// in order. A link reader stages every frame of one read per device and
// writes each device once at the end of the read, or of the next ones
// while more of the shard's bytes already wait in the socket (link.go).
// Both directions take the lock shared with other devices once per batch
// of frames, not once per frame (stage.go).
//
// # Moving live sessions
//
// When the ring changes — a shard announces draining, or a new shard
// joins — or the canary rules change, the mover walks this gateway's
// sessions and moves each one whose shard is no longer the one the
// Directory names (the ring and the rules, with the tags of the device's
// HELLO, kept in its Binding), at most MoveRate a second (DESIGN.md
// "Sessions, ownership and movement"):
//
//	mover goroutine          old shard's link reader       new shard's link reader
//	pause the session's  ──▶ State: Open(migrated,     ──▶ Opened: switch link and epoch,
//	upstream, Snapshot       state, epoch+1) on the         replay the held frames in order,
//	(epoch e)                new shard's link               DownAck, Close (epoch e) on the old
//
// The device's connection is never touched. While a session moves its
// upstream DATA waits in a bounded hold buffer (MoveBuffer; beyond it the
// frame is dropped and counted, and a reliable one is not ACKed, as with
// an open circuit) and the highest downstream ACK is kept; both go to the
// new shard once it answered Opened. The old shard fences the session at
// Snapshot (it accepts no Up of it any more) and the new binding's higher
// epoch fences everything the old binding could still send. A move that
// fails (the device closed, a link failed, the new shard refused, no
// Opened within MoveTimeout) is counted by result; the device then gets
// 503 and resumes. The frame path checks one atomic flag per frame
// (Binding.moving).
//
// # Failover
//
// A shard whose last authenticated link failed leaves this gateway's ring
// at once (ShardsChanged, WithoutDown) and comes back once a link stayed
// up for LinkTimeout (BringBack); gossip confirms later, and a shard it
// reports gone loses its links (DropShard). See failover.go.
//
// # Crash recovery
//
// Shards send checkpoints of their sessions; each Binding keeps the last
// one and the frames after it (keep.go). The sessions of a shard that went
// down are reopened on the next shard from them, as moves whose State comes
// from the keep, with their devices connected; the sessions of a link that
// failed while its shard had others wait until the shard is down or
// LinkTimeout passed (crash.go).
//
// # Goroutines
//
// All owned by the Backend and waited for by Close: the mover (started by
// Start), and per link one reader and one writer (started when a link is
// dialed, ended by its failure or by Close). Nothing runs or is armed per
// connection: the mover's tick paces the moves and expires the slow ones.
//
// # Locks
//
// Device.Lock (the connection's frame lock, server's conn.pmu) →
// moveTable.mu → the connection's write lock (server's conn.wmu, taken
// inside Queue, Flush, Fail and Closing). Backend.mu and link.mu are
// leaves. The close callback (which may run inside a Fail made under
// Device.Lock) takes only moveTable.mu, so nothing may fail a connection
// while holding moveTable.mu. Whoever takes Device.Lock outside the
// device's own handler releases it with Device.Unlock, which finishes a
// close that ran meanwhile.
package remote
