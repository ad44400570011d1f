package backend

import (
	"bytes"
	"errors"
	"testing"

	"github.com/switchyard-gw/switchyard/protocol"
)

// seedStream returns real link input: a Hello, an Open with the SDK's
// ext keys, and the hot kinds.
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

// FuzzFrameReader feeds arbitrary bytes to the link's frame splitter,
// in small reads: it must never panic, never loop, and every envelope it
// returns must re-encode to a frame that decodes the same.
func FuzzFrameReader(f *testing.F) {
	f.Add(seedStream(f), uint8(7))
	f.Add([]byte{0, 0, 0, 3, 0x93, 1, 2}, uint8(1))
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff}, uint8(3))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		fr := frameReader{r: &chunkReader{b: in, n: int(chunk%32) + 1}}
		for range len(in) + 1 {
			e, err := fr.next()
			if errors.Is(err, protocol.ErrLinkMalformed) || errors.Is(err, protocol.ErrLinkVersion) {
				continue
			}
			if err != nil {
				return
			}
			got, _, err := protocol.DecodeLinkFrame(protocol.AppendLinkFrame(nil, &e))
			if err != nil || got.Kind != e.Kind || got.Seq != e.Seq || !bytes.Equal(got.Payload, e.Payload) {
				t.Fatalf("re-encode: %v %+v %+v", err, got, e)
			}
		}
		t.Fatal("frame reader did not end")
	})
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

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, errEOF
	}
	k := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[k:]
	return k, nil
}

var errEOF = errors.New("eof")
