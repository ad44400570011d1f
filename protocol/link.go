package protocol

import (
	"encoding/binary"
	"errors"
	"math"
)

// Link frames carry the traffic between gateways and backend shards: a few
// long-lived TCP links per gateway/backend pair, each carrying every session
// of that pair.
//
//	link frame:  | length u32 (bytes after it) | envelope |
//	envelope:    msgpack array of 8:
//	             [version, kind, session(bin 16), epoch, seq, flags, payload(bin), ext]
//
// The hot kinds (Up, UpAck, Down, DownAck) are encoded and decoded by hand:
// no allocation, and the payload of a decoded envelope aliases the input.
// ext is nil for them; the control kinds carry their rare fields (device
// id, tags, reasons, state) in ext, a msgpack map decoded on demand into
// LinkExt. Unknown ext keys are ignored, so fields can be added; an
// envelope with a higher version is refused (ErrLinkVersion).

// LinkVersion is the envelope version spoken here.
const LinkVersion = 1

// MaxLinkFrame bounds one link frame: a device payload at its largest plus
// room for the envelope and a session state.
const MaxLinkFrame = 16 << 20

// LinkKind is an envelope's kind.
type LinkKind uint8

// Envelope kinds. "gw" is the gateway, "be" the backend shard.
const (
	LinkHello      LinkKind = 1  // gw→be: link authentication, step 1 (ext: node, nonce)
	LinkChallenge  LinkKind = 2  // be→gw: step 2 (ext: shard, nonce, mac)
	LinkAuth       LinkKind = 3  // gw→be: step 3 (ext: mac)
	LinkOpen       LinkKind = 10 // gw→be: open a session (ext: device, tags, reason, state, last_up, down_seq)
	LinkOpened     LinkKind = 11 // be→gw: the session is open (ext: last_up, down_seq)
	LinkRefused    LinkKind = 12 // be→gw: the session was refused (ext: code, reason)
	LinkUp         LinkKind = 20 // gw→be: upstream DATA (seq, flags, payload)
	LinkUpAck      LinkKind = 21 // be→gw: reliable upstream accepted through seq
	LinkDown       LinkKind = 22 // be→gw: downstream DATA (seq, flags, payload)
	LinkDownAck    LinkKind = 23 // gw→be: the device ACKed downstream through seq
	LinkClose      LinkKind = 30 // either: the session ended here (ext: reason, code)
	LinkKick       LinkKind = 31 // be→gw: close the device's connection (ext: code, reason)
	LinkSnapshot   LinkKind = 32 // gw→be: hand over the session's state (migration)
	LinkState      LinkKind = 33 // be→gw: the state (ext: state, last_up, down_seq)
	LinkCheckpoint LinkKind = 34 // be→gw: the state now, kept by the gateway against a crash of the shard (ext: as State, no outbox)
	LinkPublish    LinkKind = 40 // be→gw: fan out payload to the topic's subscribers (ext: topic)
	LinkSubscribe  LinkKind = 41 // be→gw: the session subscribes (ext: topic)
	LinkUnsub      LinkKind = 42 // be→gw: the session unsubscribes (ext: topic)
	LinkPing       LinkKind = 50 // either
	LinkPong       LinkKind = 51 // either
)

// SessionID identifies a session across the cluster.
type SessionID [16]byte

// Envelope is one decoded link message. Payload and Ext alias the input.
type Envelope struct {
	Kind    LinkKind
	Session SessionID
	Epoch   uint64 // grows on every move of the session; older epochs are fenced
	Seq     uint32
	Flags   Flags
	Payload []byte
	Ext     []byte // msgpack map, or nil
}

// LinkExt holds the fields of the control kinds. Zero fields are omitted.
type LinkExt struct {
	Node    string            `msgpack:"node,omitempty"`
	Shard   string            `msgpack:"shard,omitempty"`
	Nonce   []byte            `msgpack:"nonce,omitempty"`
	MAC     []byte            `msgpack:"mac,omitempty"`
	Device  string            `msgpack:"device,omitempty"`
	Tags    map[string]string `msgpack:"tags,omitempty"`
	Reason  string            `msgpack:"reason,omitempty"`
	Code    int               `msgpack:"code,omitempty"`
	State   []byte            `msgpack:"state,omitempty"`
	LastUp  uint32            `msgpack:"last_up,omitempty"`
	DownSeq uint32            `msgpack:"down_seq,omitempty"`
	Topic   string            `msgpack:"topic,omitempty"`
	// Ckpt, in Opened: the shard sends Checkpoints of this session.
	Ckpt bool `msgpack:"ckpt,omitempty"`
	// Replay, in a migrated Open after a shard crash: the crashed shard
	// had accepted every reliable frame through this seq (the gateway saw
	// its UpAck), so the frames up to it that the gateway replays are
	// handled with Session.Replaying true.
	Replay uint32 `msgpack:"replay,omitempty"`
}

// SessionState is the ext of a State envelope and of a migrated Open
// (docs/links.md "Moving a session"): the control fields plus what moves
// with a session besides its handler state. Readers that want only the
// control fields use DecodeLinkExt (unknown keys are ignored).
//
//	outbox: [[seq, payload], ...]  unacknowledged reliable downstream DATA, in seq order
//	topics: [topic, ...]           the session's subscriptions
type SessionState struct {
	LinkExt
	Outbox []OutFrame `msgpack:"outbox,omitempty"`
	Topics []string   `msgpack:"topics,omitempty"`
}

// OutFrame is one reliable downstream frame kept until the device ACKs it,
// encoded as [seq, payload].
type OutFrame struct {
	_msgpack struct{} `msgpack:",as_array"` //nolint:unused // msgpack reads the tag
	Seq      uint32
	Payload  []byte
}

// Errors of link decoding.
var (
	ErrLinkMalformed = errors.New("protocol: malformed link envelope")
	ErrLinkVersion   = errors.New("protocol: unsupported link envelope version")
	ErrLinkTooLarge  = errors.New("protocol: link frame too large")
)

// msgpack codes used by the hand-written envelope codec.
const (
	mpNil     = 0xc0
	mpBin8    = 0xc4
	mpBin16   = 0xc5
	mpBin32   = 0xc6
	mpUint8   = 0xcc
	mpUint16  = 0xcd
	mpUint32  = 0xce
	mpUint64  = 0xcf
	mpFixArr8 = 0x98
)

// AppendLinkFrame appends one link frame holding e to dst. ext, when not
// nil, must be a msgpack value (EncodeLinkExt makes one).
func AppendLinkFrame(dst []byte, e *Envelope) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = append(dst, mpFixArr8, LinkVersion, byte(e.Kind))
	dst = append(dst, mpBin8, 16)
	dst = append(dst, e.Session[:]...)
	dst = appendUint(dst, e.Epoch)
	dst = appendUint(dst, uint64(e.Seq))
	dst = appendUint(dst, uint64(e.Flags))
	dst = appendBin(dst, e.Payload)
	if len(e.Ext) == 0 {
		dst = append(dst, mpNil)
	} else {
		dst = append(dst, e.Ext...)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-LengthSize))
	return dst
}

func appendUint(dst []byte, v uint64) []byte {
	switch {
	case v < 128:
		return append(dst, byte(v))
	case v <= math.MaxUint8:
		return append(dst, mpUint8, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, mpUint16), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, mpUint32), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(dst, mpUint64), v)
}

func appendBin(dst []byte, p []byte) []byte {
	switch n := len(p); {
	case n <= math.MaxUint8:
		dst = append(dst, mpBin8, byte(n))
	case n <= math.MaxUint16:
		dst = binary.BigEndian.AppendUint16(append(dst, mpBin16), uint16(n))
	default:
		dst = binary.BigEndian.AppendUint32(append(dst, mpBin32), uint32(n))
	}
	return append(dst, p...)
}

// DecodeLinkFrame decodes the first link frame of b. It returns
// ErrIncomplete when b holds less than a whole frame.
func DecodeLinkFrame(b []byte) (Envelope, int, error) {
	if len(b) < LengthSize {
		return Envelope{}, 0, ErrIncomplete
	}
	n := binary.BigEndian.Uint32(b)
	if n > MaxLinkFrame {
		return Envelope{}, 0, ErrLinkTooLarge
	}
	total := LengthSize + int(n)
	if len(b) < total {
		return Envelope{}, 0, ErrIncomplete
	}
	e, err := DecodeEnvelope(b[LengthSize:total])
	return e, total, err
}

// DecodeEnvelope decodes one envelope that fills p exactly.
func DecodeEnvelope(p []byte) (Envelope, error) {
	var e Envelope
	d := linkDecoder{b: p}
	if d.byte() != mpFixArr8 {
		return e, ErrLinkMalformed
	}
	v := d.uint()
	if d.err == nil && v != LinkVersion {
		return e, ErrLinkVersion
	}
	e.Kind = LinkKind(d.uint())
	sid := d.bin()
	if len(sid) != len(e.Session) {
		d.err = ErrLinkMalformed
	}
	copy(e.Session[:], sid)
	e.Epoch = d.uint()
	seq := d.uint()
	flags := d.uint()
	e.Payload = d.bin()
	e.Ext = d.rest()
	if d.err != nil || seq > math.MaxUint32 || flags > math.MaxUint8 {
		return Envelope{}, ErrLinkMalformed
	}
	e.Seq, e.Flags = uint32(seq), Flags(flags)
	if len(e.Ext) == 1 && e.Ext[0] == mpNil {
		e.Ext = nil
	}
	return e, nil
}

// linkDecoder reads the hand-encoded envelope fields; the first error sticks.
type linkDecoder struct {
	b   []byte
	err error
}

func (d *linkDecoder) need(n int) []byte {
	if d.err != nil || len(d.b) < n {
		d.err = ErrLinkMalformed
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *linkDecoder) byte() byte {
	if p := d.need(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *linkDecoder) uint() uint64 {
	c := d.byte()
	switch {
	case d.err != nil:
		return 0
	case c < 0x80:
		return uint64(c)
	case c == mpUint8:
		return uint64(d.byte())
	case c == mpUint16:
		if p := d.need(2); p != nil {
			return uint64(binary.BigEndian.Uint16(p))
		}
	case c == mpUint32:
		if p := d.need(4); p != nil {
			return uint64(binary.BigEndian.Uint32(p))
		}
	case c == mpUint64:
		if p := d.need(8); p != nil {
			return binary.BigEndian.Uint64(p)
		}
	default:
		d.err = ErrLinkMalformed
	}
	return 0
}

func (d *linkDecoder) bin() []byte {
	c := d.byte()
	var n int
	switch {
	case d.err != nil:
		return nil
	case c == mpBin8:
		n = int(d.byte())
	case c == mpBin16:
		if p := d.need(2); p != nil {
			n = int(binary.BigEndian.Uint16(p))
		}
	case c == mpBin32:
		if p := d.need(4); p != nil {
			n = int(binary.BigEndian.Uint32(p))
		}
	default:
		d.err = ErrLinkMalformed
		return nil
	}
	return d.need(n)
}

// rest returns the last field (ext): nil, or a map to decode on demand.
func (d *linkDecoder) rest() []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) == 0 {
		d.err = ErrLinkMalformed
		return nil
	}
	c := d.b[0]
	if c != mpNil && !(c >= 0x80 && c <= 0x8f) && c != 0xde && c != 0xdf {
		d.err = ErrLinkMalformed
		return nil
	}
	p := d.b
	d.b = nil
	return p
}

// EncodeLinkExt encodes the control fields of an envelope.
func EncodeLinkExt(x *LinkExt) ([]byte, error) { return Marshal(x) }

// DecodeLinkExt decodes an envelope's ext; a nil ext gives zero fields.
func DecodeLinkExt(p []byte) (LinkExt, error) {
	var x LinkExt
	if len(p) == 0 {
		return x, nil
	}
	if err := Unmarshal(p, &x); err != nil {
		return LinkExt{}, ErrLinkMalformed
	}
	return x, nil
}
