package backend

import (
	"github.com/switchyard-gw/switchyard/protocol"
)

// linkExt is the State and migrated-Open ext, defined once in protocol
// because the gateway checks it on its way between shards.
type linkExt = protocol.SessionState

// outFrame is one reliable downstream frame kept until the device ACKs it.
type outFrame = protocol.OutFrame

// maxExtTopics bounds the topics accepted from one Open.
const maxExtTopics = 1024

// decodeExt decodes an envelope's ext, SDK keys included, and checks the
// outbox: seqs strictly increasing, nothing empty. A nil ext is zero.
func decodeExt(p []byte) (linkExt, error) {
	var x linkExt
	if len(p) == 0 {
		return x, nil
	}
	if err := protocol.Unmarshal(p, &x); err != nil {
		return linkExt{}, protocol.ErrLinkMalformed
	}
	var prev uint32
	for i, f := range x.Outbox {
		if f.Seq == 0 || (i > 0 && f.Seq <= prev) {
			return linkExt{}, protocol.ErrLinkMalformed
		}
		prev = f.Seq
	}
	if len(x.Topics) > maxExtTopics {
		return linkExt{}, protocol.ErrLinkMalformed
	}
	return x, nil
}

// encodeExt encodes x; the fields are plain values, so it cannot fail
// short of a bug, and then it returns nil (the envelope carries no ext).
func encodeExt(x *linkExt) []byte {
	p, err := protocol.Marshal(x)
	if err != nil {
		return nil
	}
	return p
}
