package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/cloudwego/netpoll"
)

// Per-connection memory that netpoll keeps and the gateway does not need.
//
// Every netpoll connection takes a "write barrier" from a pool when it is
// made and holds it until it closes: 32 [][]byte slots and 32 iovecs for
// writev, 1.3 KB per connection, the largest single item of an idle
// connection (heap profile in docs/benchmarks.md). The gateway never writes
// through netpoll (see write.go), so the barrier is dead weight. netpoll has
// no option for it, so the pool's New is replaced by one that makes
// single-slot barriers. A single slot is still correct for netpoll's own
// writev path (it sends one buffer node per call instead of 32), so any other
// netpoll user in the process keeps working, only with less batching.
//
// The barrier's type is not exported; it is reached by reflection and its
// fields are checked by name and type. If a netpoll upgrade changes them,
// the barrier is left alone, TuneNetpoll returns an error and
// TestNetpollTuned fails, rather than anything breaking at run time. The
// version is pinned in go.mod.

//go:linkname netpollBarrierPool github.com/cloudwego/netpoll.barrierPool
var netpollBarrierPool sync.Pool

// barrierSlots is the writev width of the tuned barriers.
const barrierSlots = 1

var (
	tuneOnce    sync.Once
	tuneErr     error
	tuned       atomic.Bool // TuneNetpoll succeeded: switchyard_netpoll_tuned
	barrierType reflect.Type
)

// errBarrierLayout is TuneNetpoll's error when netpoll's write barrier is
// not the type this file knows (a netpoll upgrade changed it).
var errBarrierLayout = errors.New("server: netpoll tuning: the write barrier's layout changed (netpoll upgraded?): not tuned")

// TuneNetpoll applies the gateway's process-wide netpoll settings: input
// buffers that start at 256 bytes (netpoll.Configure BufferSize and
// netpoll.LinkBufferCap), single-slot write barriers (see above), and
// netpoll's log without its false alarm for a connection closed inside
// OnPrepare (netpollLog). They
// roughly halve an idle connection's memory (docs/benchmarks.md) and
// change netpoll for every user of it in the process, so a Gateway never
// applies them by itself: a program that runs gateways calls TuneNetpoll
// once, before the first Gateway starts (cmd/switchyard does). The first
// call does the work; later calls return its result. The error is
// netpoll.Configure's, or errBarrierLayout when the barrier could not be
// tuned; the buffer settings are applied either way.
func TuneNetpoll() error {
	tuneOnce.Do(func() {
		netpoll.SetLoggerOutput(netpollLog{os.Stderr})
		netpoll.LinkBufferCap = linkBufferCap
		err := netpoll.Configure(netpoll.Config{BufferSize: inputBufferSize})
		if err != nil {
			err = fmt.Errorf("server: netpoll tuning: %w", err)
		}
		if !tuneBarrierPool() {
			err = errors.Join(err, errBarrierLayout)
		}
		tuneErr = err
		tuned.Store(err == nil)
	})
	return tuneErr
}

// NetpollTuned reports whether TuneNetpoll ran and succeeded (the gauge
// switchyard_netpoll_tuned).
func NetpollTuned() bool { return tuned.Load() }

func tuneBarrierPool() bool {
	if netpollBarrierPool.New == nil {
		return false
	}
	sample := netpollBarrierPool.New()
	t := reflect.TypeOf(sample)
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return false
	}
	bs, ok1 := t.Elem().FieldByName("bs")
	ivs, ok2 := t.Elem().FieldByName("ivs")
	if !ok1 || !ok2 || bs.Type != reflect.TypeFor[[][]byte]() || ivs.Type != reflect.TypeFor[[]syscall.Iovec]() {
		return false
	}
	barrierType = t.Elem()
	netpollBarrierPool.New = func() any {
		v := reflect.New(barrierType)
		p := v.UnsafePointer()
		*(*[][]byte)(unsafe.Add(p, bs.Offset)) = make([][]byte, barrierSlots)
		*(*[]syscall.Iovec)(unsafe.Add(p, ivs.Offset)) = make([]syscall.Iovec, barrierSlots)
		return v.Interface()
	}
	return true
}

// netpollLog is netpoll's log output without one false alarm. The gateway
// closes a connection it refuses at accept inside OnPrepare (closeRefused),
// which netpoll supports (it does not register a connection closed there)
// but logs as "closeCallback[...] detach operator failed: no such file or
// directory" (it tries to remove from epoll the connection it never
// added), once per refusal: a reconnect storm's refusals would flood the
// log. Every other line goes through.
type netpollLog struct{ w io.Writer }

func (l netpollLog) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("detach operator failed: no such file or directory")) {
		return len(p), nil
	}
	return l.w.Write(p)
}
