// Command gwbench is the benchmark driver of Switchyard: it measures any
// server that speaks the device protocol (PROTOCOL.md), given its address
// and process id, and writes one JSON object per run.
//
// Scenarios (each a subcommand; --out FILE appends the JSON as one line):
//
//	gwbench mem --addr A --pid P        RSS growth per idle session
//	gwbench cpu --addr A --pid P        pipelined best-effort echo: frames/s,
//	                                    server CPU µs per frame, latency
//	gwbench handshake --addr A --pid P  connect+HELLO+WELCOME+close per second
//	gwbench compare --target NAME=CMD … starts each target itself on free
//	                                    ports, runs the scenarios interleaved,
//	                                    prints a markdown table of medians
//	gwbench plot --in FILE --out-dir D  latency.svg (percentiles, log scale) and
//	                                    memory.svg (per session, ratios) of the medians
//
// tools/gwbench/run.sh builds the baseline (tools/baseline), the gateway
// (cmd/switchyard), the netpoll floor (tools/gwbench/netpollecho) and the
// driver, and runs compare over all of them. tools/gwbench/epollfloor, the
// least a server can do per handshake on this kernel (one thread, raw
// calls, no state), is run by hand for the handshake scenario only: it
// echoes no DATA (docs/benchmarks.md "The floor of a handshake").
//
// What is measured:
//
//   - Memory: VmRSS (and RssAnon) of /proc/PID/status, read after a warm-up
//     (100 sessions opened and closed), then after N sessions have each done
//     HELLO and one DATA echo and sat idle for --settle, and again --late
//     later; per session = (after − before) / N. Kernel socket memory is not
//     in RSS. The sessions are held by memworker child processes of at most
//     --per-proc sockets each (the box allows 20,000 fds per process), with
//     no goroutine per connection: a few goroutines open them one at a time
//     and the sockets then sit in Go's netpoller.
//   - CPU: utime+stime of /proc/PID/stat (all threads) at both ends of the
//     measured window, in clock ticks (getconf CLK_TCK), divided by the
//     frames echoed in the window. The driver's own CPU and the whole
//     machine's (/proc/stat) are reported beside it: on a shared 2-core box
//     the driver competes with the target, and other_cores shows noise.
//     On loopback the kernel's TCP work for a packet is done in the context
//     of whichever process sends it, so neither side's figure is "pure".
//   - Latency: each DATA payload carries its send time; an HDR histogram
//     per connection records the round trip, merged at the end.
//   - Open loop (cpu --rate N): instead of a window of frames in flight,
//     every connection sends on a fixed schedule (N frames/s in all, the
//     connections evenly phased), each frame carrying its SCHEDULED send
//     time; latency is measured from that time, so a driver or server that
//     falls behind shows in the latency (no coordinated omission). Reported
//     beside it: the achieved send rate, send lag (write time − scheduled
//     time), late sends (lag > --late-after), missed sends (scheduled in
//     the window, written after it), and unanswered frames (not echoed
//     --drain after the window; recorded with the time waited so far).
//     --rate-tick bounds the writes per connection (frames due meanwhile
//     go out together; their wait counts as latency). See openloop.go.
//   - Cluster targets: a target's descendant processes (cluster-target.sh
//     starts a backend shard as a child of the gateway it execs) are
//     measured too and reported as children_* (server_* stays the target
//     PID alone); compare's {free1} … {free4} are extra free ports for them.
//   - Handshakes: by default with blocking raw sockets (socket, bind,
//     connect, write, read, close) to keep the driver lean; --net uses Go's
//     net package, --reset closes with RST instead of FIN.
//
// Connections are spread over source addresses 127.0.0.2 … (--src-first,
// --src-spread) with IP_BIND_ADDRESS_NO_PORT, so ephemeral ports and
// TIME_WAIT do not run out. All load targets loopback, is bounded in count
// and time, and stops by itself; compare stops the servers it started
// (SIGTERM, then SIGKILL after 10 s; Pdeathsig if the driver dies), and
// kills by pid any child of a server still running 3 s after it exited.
package main
