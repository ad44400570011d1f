package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
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
// netpoll.LinkBufferCap) and stay small (inputNodes, below), single-slot
// write barriers (see above), and
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
		inputNodes.on.Store(true)
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

// netpoll's input nodes ratchet up. A connection's input buffer is a list
// of nodes; netpoll sizes each new node by the connection's maxSize, "the
// maximum size of data between two Release()", which it raises at every
// Release to the bytes held from the head node to the read node. Those
// bytes include everything ever written into the head node, read or not:
// when a node fills with heartbeats and the next PING lands in a new node,
// maxSize becomes the old node's size plus that PING, and the next node is
// twice as large (its buffers come in powers of two). An idle device's
// node thus doubles every time it fills: 256 B, 512 B, … up to 16 KB after
// about 16 KB of input (4.4 hours of 10-byte PINGs every 10 s), past which
// netpoll allocates a 16 KB buffer for every read. That is what made
// `make scale` gain 900 B per session in 5 minutes of heartbeats
// (docs/benchmarks.md "Input nodes").
//
// The gateway releases all its input after every batch, so the data
// between two releases is the batch. After a batch from a device that had
// sent nothing for quietGap (an idle device's heartbeat, a sensor's
// reading) and that left nothing unread, inputNodes puts maxSize back to
// the larger of the batch and inputBufferSize, under the same lock (the
// operator's state) that netpoll takes to change it. Busy connections keep
// netpoll's sizing: shrinking their nodes after every batch made reads
// shorter and cost 39 % more CPU per frame in the closed-loop benchmark
// (docs/benchmarks.md "Memory after 5 minutes of heartbeats"). The fields are found by reflection on the first
// connection and checked by name and type; if they are not there (a
// netpoll upgrade), nothing is changed and the gateway logs it once
// (TestInputNodesStaySmall fails).

// quietGap is how long a device must have sent nothing for its next
// batch to shrink its input node (a variable for the test).
var quietGap = time.Second

// inputNodes is the process's resolution of netpoll's connection fields.
var inputNodes nodeSizer

type nodeSizer struct {
	on    atomic.Bool // TuneNetpoll ran
	once  sync.Once
	ok    bool
	typ   reflect.Type
	opOff uintptr // connection.operator (*FDOperator)
	msOff uintptr // connection.maxSize (int)
	stOff uintptr // FDOperator.state (int32): 1 idle, 2 taken
}

// resolve finds the fields in nc's type, once; false when they are not
// there or nc is of another type.
func (s *nodeSizer) resolve(nc netpoll.Connection) bool {
	s.once.Do(func() {
		t := reflect.TypeOf(nc)
		if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
			return
		}
		op, ok1 := t.Elem().FieldByName("operator")
		ms, ok2 := t.Elem().FieldByName("maxSize")
		st, ok3 := reflect.TypeFor[netpoll.FDOperator]().FieldByName("state")
		if !ok1 || !ok2 || !ok3 || op.Type != reflect.TypeFor[*netpoll.FDOperator]() ||
			ms.Type.Kind() != reflect.Int || st.Type.Kind() != reflect.Int32 {
			return
		}
		s.typ, s.opOff, s.msOff, s.stOff, s.ok = t, op.Offset, ms.Offset, st.Offset, true
	})
	return s.ok && reflect.TypeOf(nc) == s.typ
}

// locked runs fn on nc's maxSize under netpoll's operator lock (the
// state netpoll's poller and Release take to change it), trying tries
// times; false when the lock was never free or nc has no operator.
func (s *nodeSizer) locked(nc netpoll.Connection, tries int, fn func(maxSize *int)) bool {
	p := reflect.ValueOf(nc).UnsafePointer()
	op := *(*unsafe.Pointer)(unsafe.Add(p, s.opOff))
	if op == nil {
		return false
	}
	state := (*int32)(unsafe.Add(op, s.stOff))
	for i := range tries {
		if atomic.CompareAndSwapInt32(state, 1, 2) {
			fn((*int)(unsafe.Add(p, s.msOff)))
			atomic.StoreInt32(state, 1)
			return true
		}
		if i+1 < tries {
			runtime.Gosched()
		}
	}
	return false
}

// shrink sets nc's maxSize to want when it is larger and the poller is
// not reading into nc right now (then it is left for the next batch).
func (s *nodeSizer) shrink(nc netpoll.Connection, want int) {
	s.locked(nc, 1, func(ms *int) { *ms = min(*ms, want) })
}

// maxSize reads nc's maxSize; -1 when it cannot (for the test).
func (s *nodeSizer) maxSize(nc netpoll.Connection) int {
	ms := -1
	if s.resolve(nc) {
		s.locked(nc, 1000, func(p *int) { ms = *p })
	}
	return ms
}

// afterBatch is the handler's call once a batch of batchLen bytes is
// handled: netpoll's next input node is sized for that batch again.
func (s *nodeSizer) afterBatch(nc netpoll.Connection, batchLen int) {
	if !s.on.Load() || nc.Reader().Len() != 0 || !s.resolve(nc) {
		return
	}
	s.shrink(nc, max(batchLen, inputBufferSize))
}
