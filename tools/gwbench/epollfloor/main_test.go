//go:build linux

package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
	"golang.org/x/sys/unix"
)

// TestFloorHandshake checks the floor does what the handshake benchmark
// needs of it: a HELLO gets a WELCOME, and the socket is closed once the
// device closed (no descriptor kept per finished session).
func TestFloorHandshake(t *testing.T) {
	lfd, err := listen(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(sa.(*unix.SockaddrInet4).Port)).String()
	fds := func() int {
		es, _ := os.ReadDir("/proc/self/fd")
		return len(es)
	}
	before := fds() + 1           // and the loop's epoll set
	go func() { _ = loop(lfd) }() // runs until the test binary exits
	hello, err := protocol.EncodeHello(&protocol.Hello{V: 1, ID: "dev-1"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(protocol.AppendFrame(nil, protocol.TypeHello, 0, 0, hello)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(poll.Patience))
		f, err := protocol.NewFrameReader(c, protocol.DefaultMaxFrame).NextFrame()
		if err != nil {
			t.Fatalf("session %d: reading the WELCOME: %v", i, err)
		}
		if f.Type != protocol.TypeWelcome {
			t.Fatalf("session %d: got a frame of type %v, want WELCOME", i, f.Type)
		}
		_ = c.Close()
	}
	poll.Until(t, poll.Patience, func() error {
		if n := fds(); n > before {
			return fmt.Errorf("%d descriptors open, %d before the sessions: the floor kept the sockets of finished sessions", n, before)
		}
		return nil
	})
}
