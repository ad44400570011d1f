package server

import (
	"encoding/binary"
	"sync"
)

// outbox keeps a session's reliable downstream DATA until the device ACKs
// it, for redelivery after a resume. Frames are stored back to back in one
// pooled buffer as [seq u32][len u32][payload], so keeping a frame costs a
// copy and no allocation, and an idle session whose device ACKed everything
// holds no buffer.
type outbox struct {
	buf  *[]byte
	head int // offset of the oldest unacknowledged frame
}

var outboxPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const outboxEntryHeader = 8

func (o *outbox) size() int {
	if o.buf == nil {
		return 0
	}
	return len(*o.buf) - o.head
}

// push keeps a frame.
func (o *outbox) push(seq uint32, payload []byte) {
	if o.buf == nil {
		o.buf = outboxPool.Get().(*[]byte)
	}
	b := binary.BigEndian.AppendUint32(*o.buf, seq)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	*o.buf = append(b, payload...)
}

// ack forgets every frame up to seq.
func (o *outbox) ack(seq uint32) {
	if o.buf == nil {
		return
	}
	b := *o.buf
	for o.head < len(b) && binary.BigEndian.Uint32(b[o.head:]) <= seq {
		o.head += outboxEntryHeader + int(binary.BigEndian.Uint32(b[o.head+4:]))
	}
	switch {
	case o.head == len(b):
		o.release()
	case o.head > len(b)/2:
		n := copy(b, b[o.head:])
		*o.buf = b[:n]
		o.head = 0
	}
}

// each calls fn for every kept frame, oldest first.
func (o *outbox) each(fn func(seq uint32, payload []byte)) {
	if o.buf == nil {
		return
	}
	b := *o.buf
	for off := o.head; off < len(b); {
		seq := binary.BigEndian.Uint32(b[off:])
		n := int(binary.BigEndian.Uint32(b[off+4:]))
		fn(seq, b[off+outboxEntryHeader:off+outboxEntryHeader+n])
		off += outboxEntryHeader + n
	}
}

// release returns the buffer to the pool.
func (o *outbox) release() {
	if o.buf != nil {
		if cap(*o.buf) <= 64<<10 {
			*o.buf = (*o.buf)[:0]
			outboxPool.Put(o.buf)
		}
		o.buf, o.head = nil, 0
	}
}
