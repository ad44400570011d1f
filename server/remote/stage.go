package remote

import (
	"sync"

	"github.com/switchyard-gw/switchyard/protocol"
)

// Staging: frames that cross between a device and its link are gathered
// in a buffer owned by one goroutine and handed over in one piece, so the
// lock the other side shares with every other device is taken once per
// batch of frames, not once per frame:
//
//   - upstream, a device's handler stages its batch's envelopes
//     (Backend.Data, Backend.Ack) under the device's Lock, and
//     Backend.Flush appends them to the link's queue under l.mu once;
//   - downstream, a link reader stages a read's frames per device
//     (link.queueTo) and writes each device once at the end of the read
//     (Device.WriteFrames: its write lock once).
//
// On the remote path's closed loop the per-frame locks were 12 % of the
// gateway's CPU profile: each lock's cache line went back and forth
// between the cores running the link reader and the device handlers
// (docs/benchmarks.md "Staged link frames").
//
// A staged buffer lives for one batch: it comes from stagePool (a link
// reader's, from its own few spares first) and goes back when handed
// over, so an idle session holds none.

// maxPooledStage is the largest staged buffer kept for reuse; a bigger
// one (a burst of large frames) is left to the garbage collector.
const maxPooledStage = 64 << 10

var stagePool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

func getStage() *[]byte { return stagePool.Get().(*[]byte) }

func putStage(b *[]byte) {
	if cap(*b) > maxPooledStage {
		return
	}
	*b = (*b)[:0]
	stagePool.Put(b)
}

// upStage is a device's upstream staged during its handler's batch.
// Guarded by the device's Lock.
type upStage struct {
	buf  *[]byte // whole link frames; nil when none are staged
	n    int     // envelopes in buf
	data int     // of them, LinkUp (counted as dropped when refused)
}

// stageUp stages e for the binding's link. The caller holds the device's
// Lock; Backend.Flush sends what is staged.
func (b *Binding) stageUp(e *protocol.Envelope) {
	s := &b.up
	if s.buf == nil {
		s.buf = getStage()
	}
	*s.buf = protocol.AppendLinkFrame(*s.buf, e)
	s.n++
	if e.Kind == protocol.LinkUp {
		s.data++
	}
}

// takeUp returns what is staged upstream and empties the stage (buf nil
// when nothing is). The caller holds the device's Lock and puts buf back
// with putStage.
func (b *Binding) takeUp() upStage {
	s := b.up
	b.up = upStage{}
	return s
}

// maxSpareDown bounds the staged buffers a link reader keeps for itself;
// more go back to stagePool.
const maxSpareDown = 64

// getDown is getStage for the link's reader: its own spares first, the
// last one put back first (still in the cache), without the pool.
func (l *link) getDown() *[]byte {
	if n := len(l.spareDown); n > 0 {
		b := l.spareDown[n-1]
		l.spareDown = l.spareDown[:n-1]
		return b
	}
	return getStage()
}

func (l *link) putDown(b *[]byte) {
	if len(l.spareDown) < maxSpareDown && cap(*b) <= maxPooledStage {
		*b = (*b)[:0]
		l.spareDown = append(l.spareDown, b)
		return
	}
	putStage(b)
}
