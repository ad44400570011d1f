package main

import (
	"fmt"
	"net"
)

// defaultPerProc is the most sockets one process holds: under the 20000
// open files hard limit, with room for the runtime's own descriptors.
const defaultPerProc = 19000

// portsPerSource is about how many connections one source address can
// open to one destination (the ephemeral port range, with margin).
const portsPerSource = 25000

// sessionsPerSource is how many connections one source address carries in
// all, whatever their destinations. Past that the kernel's search for a
// free ephemeral port in connect() grows slow enough to stall the
// workers: 100,000 sessions from 127.0.0.1 over 7 gateway ports (14,300
// per destination, well within the port range) left 10,463 connections
// without a HELLO for the gateways' 5 s handshake timeout; spread over 16
// addresses, none (docs/benchmarks.md, "Scale").
const sessionsPerSource = 10000

// procShares splits n sessions over processes: procs of them when procs
// > 0 (but more if one would hold over perProc), else as few as hold at
// most perProc each; as evenly as possible. Each share is [first, first+count).
type share struct{ First, Count int }

func procShares(n, procs, perProc int) []share {
	if n <= 0 {
		return nil
	}
	if perProc <= 0 {
		perProc = defaultPerProc
	}
	need := (n + perProc - 1) / perProc
	if procs < need {
		procs = need
	}
	if procs > n {
		procs = n
	}
	out := make([]share, procs)
	first := 0
	for i := range out {
		c := n / procs
		if i < n%procs {
			c++
		}
		out[i] = share{first, c}
		first += c
	}
	return out
}

// sources is the source address spreading: session g binds
// 127.0.0.(first + g mod n); n = 0 lets the kernel choose.
type sources struct{ first, n int }

// autoSources picks the spread: spread < 0 off, spread > 0 that many
// addresses, 0 automatic (enough that no address carries more than
// sessionsPerSource sessions in all nor portsPerSource to one destination;
// none when one is enough).
func autoSources(spread, sessions, addrs int) (sources, error) {
	s := sources{first: 2}
	switch {
	case spread < 0:
		return sources{}, nil
	case spread > 0:
		s.n = spread
	default:
		if addrs < 1 {
			addrs = 1
		}
		per := (sessions + addrs - 1) / addrs
		s.n = max((per+portsPerSource-1)/portsPerSource, (sessions+sessionsPerSource-1)/sessionsPerSource)
		if s.n <= 1 {
			return sources{}, nil
		}
	}
	if s.first+s.n-1 > 254 {
		return sources{}, fmt.Errorf("loadgen: source spread of %d addresses leaves 127.0.0.2–254", s.n)
	}
	return s, nil
}

// addr is the source address of session g, nil without spreading.
func (s sources) addr(g int) net.IP {
	if s.n <= 0 {
		return nil
	}
	return net.IPv4(127, 0, 0, byte(s.first+g%s.n)).To4()
}
