package testcluster

import (
	"fmt"
	"net"
	"sync"
)

// handedOut are the ports freePort returned in this process, never
// returned twice (the kernel may offer a released port again at once).
var handedOut = struct {
	sync.Mutex
	m map[int]bool
}{m: map[int]bool{}}

// freePort returns a loopback port that was free for TCP (and UDP, for
// gossip) when it was checked. Another process may take it before it is
// used: callers that start a process retry on "address already in use".
func freePort(udp bool) (int, error) {
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ok := true
		if udp {
			pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				ok = false
			} else {
				pc.Close()
			}
		}
		ln.Close()
		handedOut.Lock()
		if handedOut.m[port] {
			ok = false
		}
		handedOut.m[port] = true
		handedOut.Unlock()
		if ok {
			return port, nil
		}
	}
	return 0, fmt.Errorf("testcluster: no free port")
}

// freeAddr is freePort as 127.0.0.1:port.
func freeAddr(udp bool) (string, error) {
	p, err := freePort(udp)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", p), nil
}
