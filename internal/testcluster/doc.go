// Package testcluster starts Switchyard clusters for tests: backend shards
// and gateways joined by gossip on loopback, either in this process (New)
// or as real switchyard processes (NewProcs).
//
// In-process (Cluster):
//
//	New(t, Options{Gateways: 2, Shards: 3, App: "counter"})
//	  → shards s0..s2: backend.Server with Config.Gossip, FastTiming,
//	    link and gossip on 127.0.0.1:0
//	  → gateways: server.Gateway with Config.Cluster, the link keys and
//	    one cluster key (ClusterKeys) shared by all (resume works on any gateway)
//	  → every member joins through the gossip address of the first member
//	    still running (shard 0 at start)
//	WaitConverged(ctx): every gateway's ring holds every active shard and
//	every shard's ring as many shards.
//
// Multi-process (Procs): NewProcs builds ./cmd/switchyard once per test
// binary (go build, into a temporary directory that RemoveBinary deletes)
// and runs `switchyard backend` and `switchyard gateway --gossip` processes
// on free loopback ports with a cluster key file. The binary keeps
// memberlist's LAN timing, so a killed process is declared dead after
// about 5–6 s; links notice at once.
//
// Invariants:
//
//   - Shard and gateway indices never change: a stopped member keeps its
//     index, StartShard appends. At most one running shard per name.
//   - Everything started is stopped by t.Cleanup: devices dialed with Dial
//     first (cleanups run last-in first-out), then gateways, then shards;
//     every process is killed by its PID and waited for.
//   - Convergence is counted, not compared: Gateway.Shards and
//     Server.RingLen report sizes only. Call WaitConverged after each
//     membership step (stop, then start) so that a count means the set.
//
// Goroutines: the harness starts none that outlive a call, except one per
// process that waits for its exit; t.Cleanup waits for each. The members
// own theirs (see server and backend); memberlist may keep a few for up to
// Timing.StreamTimeout after a member stopped.
//
// Missing hook: backend has no abrupt stop, so KillShard is a Close with an
// expired context (links closed at once, mail dropped) that still announces
// draining and leaves the gossip; see KillShard.
//
// Workaround: StartGateway waits until the gateway's event loop answers
// one connection (a PING before HELLO, answered with ERROR 400), because
// a Gateway.Close that comes before netpoll's Serve goroutine installed
// its server hangs forever; see waitServing.
package testcluster
