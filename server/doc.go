// Package server is the Switchyard gateway's device path: it terminates
// device connections on netpoll, runs the handshake, keeps sessions, and
// routes every session's DATA to its backend: the embedded echo backend
// (echo.go), or the shard side, package server/remote, which sends
// sessions to the backend shards of a cluster over links and moves live
// sessions between shards when the ring or the canary rules change. This
// package also wires the gateway into the cluster (cluster.go: gossip, the
// ring, which shards are gone) and holds its canary rules (canary.go:
// Config.Canary, SetRules; the rules are the ring's Placer, fed with each
// device's HELLO tags).
//
// The device side reaches the shard side only through the backend
// interface (echo.go: Open, Data, Ack, Closed, which *remote.Backend
// implements like the echo) and the cluster wiring's calls; the shard side
// reaches a connection only as a remote.Device (device.go, and Opened in
// opening.go), and keeps its per-session state in the *remote.Binding that
// each conn holds without looking inside (server/remote/doc.go).
//
// Connection path (one device):
//
//	accept ─▶ onPrepare: admission (draining, max conns, accept rate → 503),
//	          close callback, handshake deadline in the wheel
//	input  ─▶ onRequest: unread input over MaxUnread → 413 and close; every
//	          whole frame → handle → Release; replies are queued and
//	          written with one syscall per batch (write.go)
//	HELLO  ─▶ handshake: 400/413, then 401; attach the session (takeover 409
//	          to the previous connection, resume by token); WELCOME;
//	          redeliver unacknowledged reliable downstream DATA
//	DATA   ─▶ rate limit (429) → fencing by seq → backend → ACK at flush
//	close  ─▶ onClosed: counters, detach the session (resume window starts)
//
// Invariants:
//   - no goroutine and no timer per connection: netpoll runs handlers on its
//     pool only while input is pending, and every deadline (handshake, idle,
//     GOAWAY, linger, resume window) is an entry in one timing wheel;
//   - a handler never blocks: writes go straight to the non-blocking fd (what
//     the socket refuses waits in a bounded queue that the wheel goroutine
//     retries), and the start of a frame that has not fully arrived is
//     copied out of netpoll's buffer and completed by a later call instead
//     of being waited for;
//   - the length field is checked before a frame's body is read;
//   - reliable upstream DATA is accepted once and in order per session
//     (duplicates are re-ACKed, gaps dropped) and ACKed only after the
//     backend accepted it;
//   - nothing is allocated per frame on the DATA path (TestEchoPathZeroAlloc,
//     TestBatchPathZeroAlloc);
//   - every drop and every disconnect is counted with a reason (metrics.go);
//     frames are counted by type per input batch (and per flush for those
//     sent), never with a shared atomic per DATA, ACK, PING or PONG;
//     connections and sessions are counted by state (conn.enter,
//     sessionTable). Series per shard or about the cluster are written at
//     each scrape (remote.Backend's writer, writeClusterMetrics); none has
//     a per-device label.
//
// Bounds under abuse (docs/operations.md "Overload and abuse"): a
// connection's unread input (MaxUnread, 413: netpoll reads whether or not
// the handler keeps up), a flood far over the rate (429 at once), the
// outbound queue (MaxOutbound: a slow consumer gets 503 last), the
// connections (MaxConns, by default from the file limit: 503 at accept,
// with a reserve so that the admin listener still accepts) and the
// detached sessions (MaxDetached, oldest forgotten first).
//
// netpoll tuning: TuneNetpoll (netpoll_tune.go) sets netpoll's
// process-wide buffers (Configure BufferSize and LinkBufferCap, 256 bytes)
// and replaces its write-barrier pool with single-slot barriers, about
// halving an idle connection's memory. It changes netpoll for every user
// in the process, so a Gateway never calls it: programs that run gateways
// call it once before the first Start (cmd/switchyard, the test
// harnesses). It returns Configure's error, or one saying the barrier's
// layout changed (a netpoll upgrade: TestNetpollTuned fails too); the
// gauge switchyard_netpoll_tuned says whether it took.
//
// Configuration: Config is fixed at New, except the settings Reload may
// change (reload.go: rates, admission, auth secrets, cluster keys,
// timeouts read at each use, log level). Those live in one immutable
// value behind an atomic pointer, replaced whole by a reload, so a handler
// reads them with one load and never sees half a reload; Reload itself is
// serialised by reloadMu. Refused devices are logged at a bounded rate
// (refusals.go).
//
// Native TLS (tls.go, tls_trim.go; docs/tls.md): with TLSCertFile each
// conn carries a crypto/tls Conn over an in-memory pipe. The handshake runs
// on a bounded pool (TLSHandshakeWorkers) whose reads block until
// onRequest feeds the pipe; after it, records are decrypted in onRequest
// into the same frame loop (frames, through the frameInput interface) and
// each flush seals the plaintext queued in c.out. Nothing runs per idle
// TLS connection. Lock order there: conn.wmu → crypto/tls's write lock →
// tlsConn.mu; the handshake worker takes conn.pmu only after the
// handshake, to read what followed it.
//
// Fault location (trace.go, locate.go): per-device tracing spread by a
// cluster message (internal/trace; one atomic load per inbound frame
// while off), a bounded ring of recent disconnects, and a device lookup
// that asks the other gateways' admin APIs (docs/operations.md,
// "Finding one device's trouble").
//
// Lock order: session table shard → session.mu → conn.wmu; and conn.pmu
// (the shard side's Device.Lock) → the shard side's move table → conn.wmu.
// The trace table's and the disconnect ring's locks are leaves.
// No lock is shared by all connections on the frame path.
//
// Goroutines owned by a Gateway: the wheel sweeper, netpoll's Serve loop and
// the admin HTTP server; with TLSCertFile the TLS handshake workers; with
// Cluster the ring watcher; with backend shards
// the remote.Backend's (the mover, a reader and a writer per link). Close
// waits for all of them.
package server
