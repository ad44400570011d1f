package backend

import (
	"testing"

	"github.com/switchyard-gw/switchyard/protocol"
)

// seedStream returns real link input: a Hello, an Open with the SDK's
// ext keys, and the hot kinds. (The link's frame reader is
// protocol.StreamReader, fuzzed there as FuzzStreamReader.)
func seedStream(tb testing.TB) []byte {
	x := linkExt{LinkExt: protocol.LinkExt{Device: "dev", Reason: "migrated", State: []byte("s"), LastUp: 3, DownSeq: 5,
		Tags: map[string]string{"ver": "1"}}, Outbox: []outFrame{{Seq: 4, Payload: []byte("a")}, {Seq: 5}}, Topics: []string{"t"}}
	var b []byte
	b = protocol.AppendLinkFrame(b, &protocol.Envelope{Kind: protocol.LinkHello,
		Ext: encodeExt(&linkExt{LinkExt: protocol.LinkExt{Node: "gw", Nonce: make([]byte, 16)}})})
	b = protocol.AppendLinkFrame(b, &protocol.Envelope{Kind: protocol.LinkOpen, Epoch: 2, Ext: encodeExt(&x)})
	b = protocol.AppendLinkFrame(b, &protocol.Envelope{Kind: protocol.LinkUp, Epoch: 2, Seq: 1, Flags: protocol.FlagAckRequested, Payload: []byte("hi")})
	b = protocol.AppendLinkFrame(b, &protocol.Envelope{Kind: protocol.LinkDownAck, Epoch: 2, Seq: 5})
	return b
}

// FuzzDecodeExt: the SDK's ext decoder (outbox and topics on top of
// protocol's fields) accepts only well-formed outboxes and never panics.
func FuzzDecodeExt(f *testing.F) {
	s := seedStream(f)
	for len(s) > 0 {
		e, n, _ := protocol.DecodeLinkFrame(s)
		f.Add(e.Ext)
		s = s[n:]
	}
	f.Add([]byte{0x81, 0xa6, 'o', 'u', 't', 'b', 'o', 'x', 0x92, 0x92, 2, 0xc4, 0, 0x92, 1, 0xc4, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		x, err := decodeExt(in)
		if err != nil {
			return
		}
		for i := 1; i < len(x.Outbox); i++ {
			if x.Outbox[i].Seq <= x.Outbox[i-1].Seq {
				t.Fatalf("outbox out of order: %+v", x.Outbox)
			}
		}
		if _, err := decodeExt(encodeExt(&x)); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}
