package server

import (
	"bytes"
	"crypto/tls"
	"reflect"
	"unsafe"
)

// Per-connection memory crypto/tls keeps and an idle session does not need.
//
// A tls.Conn reads records into rawInput and handshake messages into hand,
// two bytes.Buffers that keep their largest size for the connection's
// life: the ClientHello (1.5 KB and more with a post-quantum key share)
// in both, and any large record a device ever sent in rawInput (up to
// 16 KB). With 10,000s of idle sessions that is most of their TLS memory
// (docs/tls.md). crypto/tls has no option to release them, so the pmu
// holder does it between reads, when they are empty: after the
// handshake, and after a batch that grew rawInput past tlsKeepInput
// (below that it is kept, or every batch would allocate a new one).
// input (a bytes.Reader over rawInput's memory) is cleared with it.
//
// The fields are unexported; they are found by reflection and checked by
// name and type. If a Go release changes them, trimming is skipped and
// TestTLSTrimmed fails, rather than anything breaking at run time.

// tlsKeepInput is the rawInput capacity kept between batches: what a
// small-frame device's records need (crypto/tls grows it to a record plus
// 512 bytes).
const tlsKeepInput = 1024

var tlsFields = findTLSFields()

type tlsFieldOffsets struct {
	ok                    bool
	rawInput, input, hand uintptr
}

func findTLSFields() tlsFieldOffsets {
	t := reflect.TypeFor[tls.Conn]()
	field := func(name string, want reflect.Type) (uintptr, bool) {
		f, ok := t.FieldByName(name)
		return f.Offset, ok && f.Type == want
	}
	var o tlsFieldOffsets
	var ok1, ok2, ok3 bool
	o.rawInput, ok1 = field("rawInput", reflect.TypeFor[bytes.Buffer]())
	o.input, ok2 = field("input", reflect.TypeFor[bytes.Reader]())
	o.hand, ok3 = field("hand", reflect.TypeFor[bytes.Buffer]())
	o.ok = ok1 && ok2 && ok3
	return o
}

// trimTLS releases tc's empty read buffers: hand always, rawInput when
// its capacity is over keep. The caller is tc's only reader, between
// reads (pmu); Write and the handshake's end never touch these fields.
func trimTLS(tc *tls.Conn, keep int) {
	if !tlsFields.ok {
		return
	}
	p := unsafe.Pointer(tc)
	raw := (*bytes.Buffer)(unsafe.Add(p, tlsFields.rawInput))
	in := (*bytes.Reader)(unsafe.Add(p, tlsFields.input))
	hand := (*bytes.Buffer)(unsafe.Add(p, tlsFields.hand))
	if hand.Len() == 0 && hand.Cap() > 0 {
		*hand = bytes.Buffer{}
	}
	if raw.Len() == 0 && in.Len() == 0 && raw.Cap() > keep {
		*raw = bytes.Buffer{}
		in.Reset(nil)
	}
}
