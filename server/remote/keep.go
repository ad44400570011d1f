package remote

import (
	"errors"
	"sync"

	"github.com/switchyard-gw/switchyard/protocol"
)

// keep is what a gateway holds of one remote session against a crash of
// its shard (docs/links.md "Checkpoints"): the shard's last checkpoint,
// the reliable upstream frames sent to the shard after the checkpoint's
// last_up, and the reliable downstream DATA the device has not ACKed. When
// the shard fails, recoverOpen turns them into the migrated Open that
// reopens the session on the next shard, and the frames to replay there.
//
// Frames are kept as device frames (protocol.AppendFrame), in seq order,
// together at most limit bytes: beyond it the oldest are dropped and
// counted; an upstream frame dropped that way makes the session
// unrecoverable until a checkpoint covers it (gapUp).
//
// A Binding gets its keep when the shard says in Opened that it
// checkpoints the session (Binding.keepOn). Callers: the device's handler
// (upSent, downAcked, with the device's Lock), the link reader
// (checkpoint, downSent) and a failing link (recoverOpen, with the
// device's Lock); mu is a leaf lock.
type keep struct {
	mu       sync.Mutex
	ckpt     []byte // the last checkpoint's ext
	ckptUp   uint32 // its last_up
	gapUp    uint32 // highest upstream seq dropped from up
	upHigh   uint32 // highest upstream seq kept
	downHigh uint32 // highest reliable downstream seq sent to the device
	up       []byte // reliable upstream after ckptUp
	down     []byte // reliable downstream not ACKed by the device
}

// Errors of recoverOpen.
var (
	errNoCheckpoint = errors.New("remote: no checkpoint of the session")
	errKeepGap      = errors.New("remote: upstream frames after the checkpoint were dropped")
)

// size is what k holds, for the gauge.
func (k *keep) size() int { return len(k.ckpt) + cap(k.up) + cap(k.down) }

// keepOn makes b keep what a crash of its shard needs (the shard
// checkpoints the session: on) or forget it (off). The device's Lock is
// held (Opened of an open or a move).
func (b *Binding) keepOn(on bool, m *Metrics) {
	switch k := b.keep.Load(); {
	case on && k == nil:
		b.keep.Store(new(keep))
	case !on && k != nil:
		b.keep.Store(nil)
		k.reset(m)
	}
}

// reset forgets everything (the session ended, or its shard stopped
// checkpointing it).
func (k *keep) reset(st *Metrics) {
	k.mu.Lock()
	defer k.mu.Unlock()
	st.keepBytes(-k.size())
	k.ckpt, k.up, k.down = nil, nil, nil
	k.ckptUp, k.gapUp, k.downHigh, k.upHigh = 0, 0, 0, 0
}

// checkpoint takes a Checkpoint of the session: its ext and last_up. The
// upstream frames it covers are dropped.
func (k *keep) checkpoint(lastUp uint32, ext []byte, st *Metrics) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ckpt != nil && lastUp < k.ckptUp {
		return
	}
	before := k.size()
	k.ckpt = append(k.ckpt[:0], ext...)
	k.ckptUp = lastUp
	k.up = trimThrough(k.up, lastUp)
	st.keepBytes(k.size() - before)
}

// upSent keeps a reliable upstream frame sent to the shard.
func (k *keep) upSent(seq uint32, flags protocol.Flags, payload []byte, limit int, st *Metrics) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if seq <= max(k.ckptUp, k.upHigh) {
		return // covered, or kept already (a resend)
	}
	k.upHigh = seq
	before := k.size()
	var dropped uint32
	k.up, dropped = appendBounded(k.up, protocol.TypeData, flags, seq, payload, limit-len(k.down))
	if dropped > 0 {
		k.gapUp = max(k.gapUp, dropped)
		st.keepDropped(true)
	}
	st.keepBytes(k.size() - before)
}

// downSent keeps a reliable downstream frame sent to the device.
func (k *keep) downSent(seq uint32, flags protocol.Flags, payload []byte, limit int, st *Metrics) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if seq <= k.downHigh {
		return
	}
	k.downHigh = seq
	before := k.size()
	var dropped uint32
	k.down, dropped = appendBounded(k.down, protocol.TypeData, flags, seq, payload, limit-len(k.up))
	if dropped > 0 {
		st.keepDropped(false)
	}
	st.keepBytes(k.size() - before)
}

// downAcked drops the downstream frames the device ACKed.
func (k *keep) downAcked(seq uint32, st *Metrics) {
	k.mu.Lock()
	defer k.mu.Unlock()
	before := k.size()
	k.down = trimThrough(k.down, seq)
	st.keepBytes(k.size() - before)
}

// recoverOpen returns the ext of the migrated Open that reopens the
// session on another shard after its shard failed, and the upstream
// frames to replay there after Opened (k's copy is emptied: the replay
// keeps them again). acked, the highest upstream seq the device got an
// ACK for, becomes the ext's replay: those frames were accepted.
func (k *keep) recoverOpen(device, node string, acked uint32, st *Metrics) ([]byte, []byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case k.ckpt == nil:
		return nil, nil, errNoCheckpoint
	case k.gapUp > k.ckptUp:
		return nil, nil, errKeepGap
	}
	x, err := decodeMoveState(k.ckpt)
	if err != nil {
		return nil, nil, err
	}
	x.LastUp, x.Replay = k.ckptUp, max(acked, k.ckptUp)
	x.DownSeq = max(x.DownSeq, k.downHigh)
	x.Outbox = x.Outbox[:0]
	for b := k.down; len(b) > 0; {
		f, n, err := protocol.Decode(b, len(b))
		if err != nil {
			break // cannot happen: encoded here
		}
		x.Outbox = append(x.Outbox, protocol.OutFrame{Seq: f.Seq, Payload: f.Payload})
		b = b[n:]
	}
	ext, err := migratedOpen(&x, device, node)
	if err != nil {
		return nil, nil, err
	}
	held := k.up
	st.keepBytes(-cap(k.up))
	k.up, k.upHigh = nil, k.ckptUp
	return ext, held, nil
}

// trimThrough drops the frames of b with seq ≤ seq (b is in seq order). An
// emptied buffer that grew large is let go.
func trimThrough(b []byte, seq uint32) []byte {
	off := 0
	for off < len(b) {
		f, n, err := protocol.Decode(b[off:], len(b))
		if err != nil || f.Seq > seq {
			break
		}
		off += n
	}
	if off == 0 {
		return b
	}
	if off == len(b) {
		if cap(b) > keepRetainCap {
			return nil
		}
		return b[:0]
	}
	return b[:copy(b, b[off:])]
}

// keepRetainCap: an emptied keep buffer up to this size is reused.
const keepRetainCap = 1 << 10

// appendBounded appends a frame to b and, while b is over limit bytes,
// drops its oldest frames; it returns the highest seq dropped (0: none).
func appendBounded(b []byte, t protocol.Type, flags protocol.Flags, seq uint32, payload []byte, limit int) ([]byte, uint32) {
	b = protocol.AppendFrame(b, t, flags, seq, payload)
	var dropped uint32
	off := 0
	for len(b)-off > limit && off < len(b) {
		f, n, err := protocol.Decode(b[off:], len(b))
		if err != nil {
			break
		}
		dropped = f.Seq
		off += n
	}
	if off > 0 {
		b = b[:copy(b, b[off:])]
	}
	return b, dropped
}
