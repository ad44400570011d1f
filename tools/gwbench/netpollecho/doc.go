// Command netpollecho is a floor reference for benchmarks only: the least a
// cloudwego/netpoll server can do on the Switchyard wire format. It frames
// the stream by the 4-byte length, answers a HELLO with a fixed WELCOME and
// echoes every other frame back unchanged. It checks nothing else (no
// handshake rules, no auth, no timeouts, no sequence numbers), so it is
// not a protocol implementation; gwbench compares the gateway with it to
// show what the event loop and its buffers cost on their own.
//
// Usage:
//
//	go build -o /tmp/netpollecho ./tools/gwbench/netpollecho
//	/tmp/netpollecho --listen 127.0.0.1:7402 [--buffer-size 512] [--defer-accept [--hello-at-accept]]
//
// --buffer-size sets netpoll.Config.BufferSize and netpoll.LinkBufferCap
// (0 keeps netpoll's defaults: about 12–14 KB resident per connection once
// it has sent a byte).
//
// --defer-accept sets TCP_DEFER_ACCEPT on the listener, as the gateway
// does. --hello-at-accept answers a HELLO that came with its connection
// inside netpoll's OnPrepare, with raw calls, before the connection is
// registered: the experiment of docs/benchmarks.md "The floor of a
// handshake" (it saved nothing measurable).
package main
