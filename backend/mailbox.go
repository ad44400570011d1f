package backend

import "sync"

// mailbox is a session's queue of handler events. Its buffer is taken from
// a pool when the first event arrives and given back when the queue
// empties, so an idle session holds none and a busy one does not regrow it
// for every burst (it did: a fifth of the shard's CPU under load went to
// growslice and malloc).
type mailbox struct {
	buf  *[]event
	head int // index of the next event to pop
}

// mailboxCap is the capacity of a pooled buffer; larger ones (a session
// that fell far behind) are dropped rather than pooled.
const mailboxCap = 64

var mailboxPool = sync.Pool{New: func() any { b := make([]event, 0, mailboxCap); return &b }}

func (m *mailbox) len() int {
	if m.buf == nil {
		return 0
	}
	return len(*m.buf) - m.head
}

func (m *mailbox) push(ev event) {
	if m.buf == nil {
		m.buf = mailboxPool.Get().(*[]event)
	}
	b := *m.buf
	if len(b) == cap(b) && m.head > 0 { // slide the live events to the front
		n := copy(b, b[m.head:])
		clear(b[n:])
		b, m.head = b[:n], 0
	}
	*m.buf = append(b, ev)
}

// pop removes the oldest event; the caller checked len() > 0.
func (m *mailbox) pop() event {
	b := *m.buf
	ev := b[m.head]
	b[m.head] = event{}
	m.head++
	if m.head == len(b) {
		m.release()
	}
	return ev
}

// release gives the buffer back (dropping any events left).
func (m *mailbox) release() {
	if m.buf == nil {
		return
	}
	if b := *m.buf; cap(b) <= mailboxCap {
		clear(b[:cap(b)])
		*m.buf = b[:0]
		mailboxPool.Put(m.buf)
	}
	m.buf, m.head = nil, 0
}
