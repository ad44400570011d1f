package client

// outFrame is a reliable upstream DATA frame kept until acknowledged.
type outFrame struct {
	seq     uint32
	payload []byte // owned by the client, never modified
	sent    bool   // written at least once
}

// outbox holds the unacknowledged reliable upstream frames in seq order and
// numbers new ones. Guarded by Client.mu.
type outbox struct {
	frames []outFrame
	next   uint32 // seq of the next reliable frame; starts at 1
}

// push appends payload as the next reliable frame and returns it.
func (o *outbox) push(payload []byte, sent bool) outFrame {
	if o.next == 0 {
		o.next = 1
	}
	f := outFrame{seq: o.next, payload: payload, sent: sent}
	o.next++
	o.frames = append(o.frames, f)
	return f
}

// ackThrough drops the frames with seq ≤ seq and returns how many it dropped.
func (o *outbox) ackThrough(seq uint32) int {
	k := 0
	for k < len(o.frames) && o.frames[k].seq <= seq {
		o.frames[k] = outFrame{}
		k++
	}
	o.frames = o.frames[k:]
	if len(o.frames) == 0 {
		o.frames = nil
	}
	if seq >= o.next {
		o.next = seq + 1
	}
	return k
}

// renumber numbers the kept frames from 1 again, for a new session that
// replaced one that could not be resumed.
func (o *outbox) renumber() {
	for i := range o.frames {
		o.frames[i].seq = uint32(i + 1)
	}
	o.next = uint32(len(o.frames) + 1)
}

// snapshot returns a copy of the kept frames and marks them sent.
func (o *outbox) snapshot() []outFrame {
	s := append([]outFrame(nil), o.frames...)
	for i := range o.frames {
		o.frames[i].sent = true
	}
	return s
}

// inbox is the downstream delivery state. Guarded by Client.mu.
type inbox struct {
	delivered uint32   // highest reliable downstream seq delivered to Recv's queue
	ackDue    bool     // an ACK(delivered) should go out
	pongs     [][]byte // PING payloads to answer, in order
}

// maxQueuedPongs bounds the PONGs waiting to be written; PINGs beyond are
// not answered (the gateway only needs to see traffic).
const maxQueuedPongs = 16

// accept decides what to do with reliable downstream DATA seq: deliver it,
// or drop it as a duplicate. Either way an ACK becomes due.
func (in *inbox) accept(seq uint32) (deliver bool) {
	in.ackDue = true
	return seq > in.delivered
}
