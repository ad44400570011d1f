//go:build linux

// Command epollfloor is a floor reference for the handshake benchmark
// only: the least CPU any server on this kernel can spend on a new
// session. One thread, one epoll set and raw system calls: a listener with
// TCP_NODELAY and TCP_DEFER_ACCEPT (as the gateway's, so an accepted socket
// usually holds its HELLO already), accept4, one read, a fixed WELCOME
// written, the socket added to epoll to wait for the device's close, a
// read of the EOF, close. It keeps no state per connection, parses
// nothing but the frame type, checks nothing and echoes nothing: it is
// not a protocol implementation.
//
// gwbench compares the gateway and the naive server with it: what it
// costs per handshake is kernel work (the socket's setup and teardown,
// the loopback TCP exchange) that every server pays, so it bounds from
// below the ratio any server can reach against the naive one
// (docs/benchmarks.md "The floor of a handshake").
//
// Usage (Linux only):
//
//	go build -o /tmp/epollfloor ./tools/gwbench/epollfloor
//	/tmp/epollfloor --listen 127.0.0.1:7403
package main
