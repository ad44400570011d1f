package main

import (
	"context"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// The cpu scenario's flooders (--flooders N): devices that send 42-byte
// DATA as fast as their sockets take it and never read, the abuse of
// docs/operations.md "Overload and abuse". Each reconnects with a fresh id
// as soon as the server closes it (a persistent attacker), so the flood
// lasts the whole run; the latency of the scenario's own connections is
// then that of quiet devices beside a flooder. They run on source
// addresses of their own (floodSrc), apart from the measured connections.

// floodChunk is one write of a flooder: 64 KiB of DATA frames with a
// 32-byte payload (42 bytes a frame).
var floodChunk = func() []byte {
	var b []byte
	p := make([]byte, 32)
	for len(b) < 64<<10 {
		b = protocol.AppendFrame(b, protocol.TypeData, 0, 0, p)
	}
	return b
}()

// floodSrc offsets the flooders' dial index past any measured connection.
const floodSrc = 1 << 20

type flood struct {
	stop     atomic.Bool
	connects atomic.Int64 // handshakes that succeeded
	refused  atomic.Int64 // dials or handshakes that failed
	bytes    atomic.Int64 // bytes written
	mu       sync.Mutex
	conns    map[int]*net.TCPConn // the connection each flooder writes on
	wg       sync.WaitGroup
}

// startFlood starts n flooders against t, each waiting retry after a
// refused connection; nil when n is 0.
func startFlood(ctx context.Context, t target, o common, n int, retry time.Duration) *flood {
	if n <= 0 {
		return nil
	}
	f := &flood{conns: map[int]*net.TCPConn{}}
	for i := range n {
		f.wg.Add(1)
		go func() { defer f.wg.Done(); f.run(ctx, t, o, i, retry) }()
	}
	return f
}

func (f *flood) run(ctx context.Context, t target, o common, i int, retry time.Duration) {
	var buf []byte
	prefix := "gwb-flood-" + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(i) + "-"
	for k := 0; !f.stop.Load() && ctx.Err() == nil; k++ {
		c, err := o.spread.dial(ctx, floodSrc+i, t.addr)
		if err == nil {
			id := prefix + strconv.Itoa(k)
			if err = handshake(c, &buf, id, o.auth.token(id)); err != nil {
				c.Close()
			}
		}
		if err != nil {
			f.refused.Add(1)
			time.Sleep(retry) // refused (accept rate, max conns, the abuse penalty)
			continue
		}
		f.connects.Add(1)
		f.mu.Lock()
		f.conns[i] = c
		f.mu.Unlock()
		for !f.stop.Load() {
			n, err := c.Write(floodChunk)
			f.bytes.Add(int64(n))
			if err != nil {
				break
			}
		}
		c.Close()
	}
}

// end stops the flooders (closing their connections unblocks their
// writes) and reports what they did.
func (f *flood) end(r *Result) {
	if f == nil {
		return
	}
	f.stop.Store(true)
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	r.Results["flood_connects"] = float64(f.connects.Load())
	r.Results["flood_refused"] = float64(f.refused.Load())
	r.Results["flood_mb_written"] = float64(f.bytes.Load()) / 1e6
}
