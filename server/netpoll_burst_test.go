package server

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/cloudwego/netpoll"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/internal/rawio"
	"golang.org/x/sys/unix"
)

// TestPollerBurstKeepsNoBarriers checks the barrier patch in
// third_party/netpoll (PATCH.md): after a burst of events the poller keeps
// one read barrier, not one per event slot. Upstream's poller doubles its
// event array whenever a wait fills it and gives every slot a barrier of
// 1.3 KB, and keeps them: after a reconnect storm a gateway held megabytes
// it never used again. Here 5,000 connections turn readable at once (one
// P, raw writes: the poller cannot run until all are written), so the
// poller's waits fill and grow to 4,096 slots: 5.2 MB of barriers without
// the patch (the heap grew by 6.8 MB without it, 1.1 MB with it).
func TestPollerBurstKeepsNoBarriers(t *testing.T) {
	const conns = 5000
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var accepted, read atomic.Int64
	ln := serveNetpoll(t,
		func(_ context.Context, c netpoll.Connection) error {
			r := c.Reader()
			n := r.Len()
			_ = r.Skip(n)
			read.Add(int64(n))
			return r.Release()
		},
		func(netpoll.Connection) context.Context {
			accepted.Add(1)
			return context.Background()
		})
	sa := &unix.SockaddrInet4{Port: ln.Addr().(*net.TCPAddr).Port, Addr: [4]byte{127, 0, 0, 1}}
	fds := make([]int, 0, conns)
	defer func() {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
	}()
	for range conns {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
		if err := unix.Connect(fd, sa); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, poll.Patience, func() error {
		if n := accepted.Load(); n < conns {
			return fmt.Errorf("%d of %d connections accepted", n, conns)
		}
		return nil
	})
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	before := heap()
	one := []byte{1}
	for _, fd := range fds { // raw: no scheduling point, the poller waits
		if _, err := rawio.Write(fd, one); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, poll.Patience, func() error {
		if n := read.Load(); n < conns {
			return fmt.Errorf("%d of %d bytes read", n, conns)
		}
		return nil
	})
	if grew := int64(heap()) - int64(before); grew > 3<<20 {
		t.Errorf("the heap grew by %d KB over a burst of %d readable connections, want under 3 MB (about 1 MB is the connections' input buffers): the poller kept a barrier per event slot (netpoll patch lost?)", grew>>10, conns)
	}
}
