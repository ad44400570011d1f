package remote

import (
	"sync/atomic"

	"github.com/switchyard-gw/switchyard/protocol"
)

// Device is one device connection and its session as the shard side sees
// it. The device side (package server, its conn) implements it; nothing
// else of the connection is reachable from here.
//
// Lock order: Device.Lock → moveTable.mu → the device's write lock (which
// Queue, Flush, Fail and Closing take inside). Fail may run the
// connection's close callback on the calling goroutine, and that callback
// calls Backend.Closed, which takes moveTable.mu: so nothing here calls
// Fail, or anything that may fail the device, while holding moveTable.mu.
type Device interface {
	// Session returns the session's id and its device's id. Both are set
	// before Backend.Open and never change; any goroutine, no lock.
	Session() (id protocol.SessionID, device string)
	// Binding returns the shard side's state of this connection: the same
	// pointer, never nil, for every call of the connection's life (the
	// device side allocates it before Backend.Open). Any goroutine.
	Binding() *Binding
	// Lock takes the connection's frame lock: while it is held no frame
	// of the device is handled and nothing else is replayed. Link readers
	// take it to complete an open, the mover to start and end a move.
	Lock()
	// Unlock releases the frame lock, then finishes a close of the
	// connection that happened while it was held (the close callback
	// cannot wait for the lock and leaves that to its holder).
	Unlock()
	// Opening reports that the device passed its HELLO and waits for its
	// shard to bind the session, and the connection is not closing. The
	// caller holds Lock.
	Opening() bool
	// Opened completes the handshake once the shard has bound the
	// session: WELCOME (resumed, last as WELCOME last), then the frames the
	// device sent meanwhile, handled in order (they reach Backend.Data and
	// Backend.Ack on this goroutine), then a flush. The caller holds Lock
	// and has just seen Opening report true.
	Opened(resumed bool, last uint32)
	// Closing reports that the connection is closing or closed: nothing
	// more reaches the device. Any goroutine.
	Closing() bool
	// Queue queues a frame for the device (dropped when it is closing);
	// Flush writes out what is queued. Any goroutine.
	Queue(t protocol.Type, flags protocol.Flags, seq uint32, payload []byte)
	Flush()
	// WriteFrames queues frames, whole encoded frames one after another
	// (dropped when the device is closing), and writes out everything
	// queued: what Queue of each and Flush do, with one take of the
	// device's write lock. A link reader stages a read's frames per
	// device and writes each device once (stage.go). Any goroutine;
	// frames is not kept.
	WriteFrames(frames []byte)
	// Fail sends ERROR code with msg and closes the connection. Any
	// goroutine, with or without Lock held, never with moveTable.mu held.
	Fail(code int, msg string)
}

// Binding is the shard side's state of one session's connection: the
// link to its shard, the binding's epoch, whether it is moving. The
// device side holds one pointer to it for the connection's life
// (Device.Binding) and knows nothing of what is inside; everything the
// shard side keeps per connection lives here, not in the device side's
// structs. The zero value is an unbound session.
//
// What a crash of the session's shard needs (its last checkpoint, the
// frames after it) hangs off keep once the shard said it checkpoints the
// session (keep.go), so a session whose shard does not costs one pointer.
type Binding struct {
	// link is the session's link to its shard. Set by Open and switched by
	// a move's end, both under the device's Lock (the move's end also
	// under moveTable.mu, where Closed reads it).
	link *link
	// epoch is the binding's epoch on its shard, from the shard's Opened.
	epoch atomic.Uint64
	// moving: the session is moving to another shard (move.go); upstream
	// goes to the move's hold buffer. One atomic load per frame.
	moving atomic.Bool
	// stager is the link whose reader staged frames for the device in
	// its current read and writes them at the end of it; down holds them
	// until then, or until that reader writes them early (stage.go).
	// Only the stager touches down. During a move's handover two links'
	// readers may both have frames for the device: the one that claimed
	// it first stages, the other queues and flushes at once.
	stager atomic.Pointer[link]
	down   *[]byte
	// up: the envelopes the device's handler staged in its batch, for
	// Backend.Flush to send (under the device's Lock; stage.go).
	up upStage
	// keep holds the last checkpoint and the frames after it (keep.go);
	// nil unless the shard checkpoints the session.
	keep atomic.Pointer[keep]
	// tags are the device's HELLO tags on this connection (nil when it
	// sent none): the Directory places the session by them at the open
	// and again at every mover pass, so a canary rule change moves it.
	// Set by Open and read under the device's Lock.
	tags map[string]string
	// rule is the canary rule that placed the session on its shard (""
	// when none): a move to or from a rule's shards counts as "canary".
	// Set with link, under the device's Lock.
	rule string
	// acked is the highest upstream seq ACKed to the device: an ACK is
	// "every DATA through seq", so a lower one (a shard that reopened the
	// session from a checkpoint ACKs the replayed frames again) is not
	// passed on; a crash recovery replays the frames through it as
	// accepted (keep.recoverOpen). Written by the binding's link reader.
	acked atomic.Uint32
}

// Where is where a binding's session lives: the shard, the canary
// rule that placed it there ("" when none) and the binding's epoch on
// the shard. For the admin API and per-device tracing; the caller holds
// the device's Lock. A binding not (yet) bound has no shard.
type Where struct {
	Shard string `json:"shard"`
	Rule  string `json:"rule,omitempty"`
	Epoch uint64 `json:"epoch"`
}

// CheckpointBytes is the size of the last checkpoint of the session this
// gateway holds for a crash of its shard (keep.go): 0 while there is none
// (the shard does not checkpoint it, or the first has not arrived), when
// such a crash ends the session with 503. The caller holds the device's
// Lock.
func (b *Binding) CheckpointBytes() int {
	k := b.keep.Load()
	if k == nil {
		return 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.ckpt)
}

// Where returns where the binding's session lives now.
func (b *Binding) Where() Where {
	if b == nil || b.link == nil {
		return Where{}
	}
	return Where{Shard: b.link.shard, Rule: b.rule, Epoch: b.epoch.Load()}
}
