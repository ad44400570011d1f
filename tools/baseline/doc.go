// Command baseline is a BASELINE for benchmarks only: a naive
// goroutine-per-connection server for the Switchyard device protocol,
// version 1, written the way a typical Go programmer would write it.
//
// It is not the gateway and is not meant to run in production. It exists so
// that tools/gwbench can put the gateway's figures (memory per idle session,
// CPU per echoed frame, handshakes per second) next to those of the obvious
// alternative:
//
//   - net.Listen and one goroutine per accepted connection;
//   - a bufio.Reader and a bufio.Writer of default size (4 KB each) per
//     connection; replies are flushed when the read buffer is drained, so a
//     pipelined burst is answered with one write;
//   - HELLO → WELCOME (with the HMAC token check of PROTOCOL.md when
//     --auth-secret-file is given), PING → PONG, DATA echoed by an embedded
//     echo backend: best-effort DATA comes back best-effort, reliable DATA is
//     ACKed and comes back as reliable DATA numbered by its own downstream
//     sequence;
//   - ERROR 400/401/408/413 for bad frames, bad handshakes and timeouts, then
//     close. The handshake timeout (5 s) and the idle timeout (3 × hb) are
//     read deadlines, set only before a read that may block.
//
// There is no session table, no takeover, no resume and no backend: the
// baseline measures the connection tier alone.
//
// Usage:
//
//	go build -o /tmp/baseline ./tools/baseline
//	/tmp/baseline --listen 127.0.0.1:7401 [--auth-secret-file FILE]
//
// It owns the accept goroutine and one goroutine per connection; SIGINT or
// SIGTERM closes the listener and exits.
package main
