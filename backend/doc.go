// Package backend is the SDK a Switchyard backend service imports. It
// serves one backend shard: the gateways open a few authenticated TCP
// links to it (docs/links.md is the contract) and carry on them every
// session whose device id the ring places on this shard. The application
// supplies a Handler; the package keeps the session table, the sequence
// state and the outboxes, and hands a session's state over when it moves.
//
//	gateway ══link══▶ reader ─▶ session table ─▶ mailbox ─▶ workers ─▶ Handler
//	        ◀═══════ writer ◀─ link queue ◀── Send / UpAck / Opened / State
//
// A session is bound to one gateway link at a time with an epoch (Open);
// envelopes of any other link or epoch are dropped and counted
// (fencing). An Open for a device bound elsewhere kicks the old binding
// with 409 (takeover). Reliable upstream data reaches the handler exactly
// once and in order (duplicates re-acknowledged, gaps dropped) and is
// acknowledged (UpAck, cumulative, one per worker batch) only after
// OnMessage accepted it. Reliable downstream data is numbered here and
// kept in the session's outbox until the device ACKs it, and resent after
// the device's HELLO last when a gateway binds the session again. A
// session whose gateway went away waits ResumeWindow, then OnClose runs.
// Snapshot hands the handler's state, the sequences, the outbox and the
// topics to the gateway (State) and fences the session until it is opened
// again. Checkpoints send the same state, without the outbox and without
// fencing, to the session's gateway after it opened and whenever it
// changed (at most every CheckpointInterval), so that the gateway can
// reopen the session elsewhere if this shard crashes (checkpoint.go);
// the frames it replays then reach the handler with Session.Replaying.
//
// Invariants:
//   - handler calls for one session never overlap and follow arrival
//     order; calls for different sessions run concurrently on a fixed
//     pool of Config.Workers goroutines (worker.go), never one per session;
//   - a reader never blocks on a handler: a full mailbox drops the Up and
//     counts it (reliable ones stay unacknowledged, the device resends);
//   - nothing the handler accepted is acknowledged before it accepted it,
//     and nothing acknowledged is delivered again;
//   - every queue is bounded: per-session mailbox (MaxMailbox), outbox
//     (MaxOutbox), per-link write queue (MaxLinkQueue, slow links closed);
//   - every drop has a counter (Stats); nothing is logged per frame.
//
// Lock order: Server.mu → Session.mu → idleSet.mu, link.mu, runQueue.mu,
// checkpoints.mu.
//
// Goroutines owned by a Server: the accept loop, the janitor (expires
// detached sessions), the checkpointer, Config.Workers handler workers, per link a
// reader and a writer, and with Config.AdminListen the admin listener
// (admin.go: /metrics, /healthz, /readyz; closed last, so that a drain
// can be watched). Close waits for all of them.
//
// Metrics (metrics.go): Stats is where the counters live; /metrics writes
// every field of it as a series at each scrape, beside the handler's
// call counts and latency histograms (docs/operations.md "Metrics").
//
// Tracing (trace.go): a gateway's trace request (internal/trace) arrives
// with the forwarded calls; the worker then logs the traced device's
// events, checking one atomic per event while no trace is active.
//
// Cluster hooks: Config.Announcer publishes the shard in gossip, and
// Config.Forwarder carries Push and Kick to the shard that owns a device;
// Config.Gossip provides both from a cluster.Node. Without any, the shard
// is local only.
//
// # Running a shard: Run
//
// Run is the one call a standalone backend needs: it reads the cluster
// key file the gateways read, derives the gossip and link keys from it
// (cluster.DeriveKeys: passing the file's lines as gossip keys would
// leave the shard outside the cluster), creates and starts the Server,
// joins the gossip, serves until ctx ends or a gateway asks the shard to
// drain (DrainRequested: the admin API's shard drain), then drains it
// (its sessions move to other shards with their state) and closes it:
//
//	func main() {
//		var cfg backend.RunConfig
//		cfg.RegisterFlags(flag.CommandLine) // -shard -link -gossip -join -cluster-key-file -drain-timeout
//		flag.Parse()
//		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
//		defer stop()
//		if err := backend.Run(ctx, cfg, echo.Handler{}); err != nil {
//			fmt.Fprintln(os.Stderr, "echo-shard:", err)
//			os.Exit(1)
//		}
//	}
//
// A shard that has not joined after RunConfig.JoinWarning (10 s) logs a
// WARN saying whether its seeds are unreachable or answer but do not let
// it in (a wrong key); New logs a WARN when Config.Gossip.Keys are the raw
// ClusterKeys. examples/*/cmd/*-shard are such mains.
package backend
