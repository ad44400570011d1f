package server

import (
	"reflect"
	"sync"
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
// fields are checked by name and type. If a netpoll upgrade changes them, the
// tuning is skipped and TestNetpollTuned fails, rather than anything
// breaking at run time. The version is pinned in go.mod.

//go:linkname netpollBarrierPool github.com/cloudwego/netpoll.barrierPool
var netpollBarrierPool sync.Pool

// barrierSlots is the writev width of the tuned barriers.
const barrierSlots = 1

var (
	tuneOnce    sync.Once
	barrierOK   bool // the barrier pool was tuned
	barrierType reflect.Type
)

// tuneNetpoll applies the process-wide netpoll settings once, before the
// first listener exists.
func tuneNetpoll() {
	tuneOnce.Do(func() {
		netpoll.LinkBufferCap = linkBufferCap
		_ = netpoll.Configure(netpoll.Config{BufferSize: inputBufferSize})
		barrierOK = tuneBarrierPool()
	})
}

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
