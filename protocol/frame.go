package protocol

import "encoding/binary"

// Type is a frame's type byte.
type Type uint8

// Frame types (PROTOCOL.md, "Frame types").
const (
	TypeHello   Type = 0x01 // C→S, first frame
	TypeWelcome Type = 0x02 // S→C, handshake answer
	TypePing    Type = 0x03 // both
	TypePong    Type = 0x04 // both
	TypeData    Type = 0x10 // both
	TypeAck     Type = 0x11 // both, cumulative
	TypeGoAway  Type = 0x20 // S→C
	TypeError   Type = 0x7F // S→C, last frame before close (except 429)
)

var typeNames = [256]string{
	TypeHello: "HELLO", TypeWelcome: "WELCOME", TypePing: "PING", TypePong: "PONG",
	TypeData: "DATA", TypeAck: "ACK", TypeGoAway: "GOAWAY", TypeError: "ERROR",
}

// Known reports whether t is a type of protocol version 1.
func (t Type) Known() bool { return typeNames[t] != "" }

func (t Type) String() string {
	if n := typeNames[t]; n != "" {
		return n
	}
	return "UNKNOWN"
}

// Flags is a frame's flag byte.
type Flags uint8

// FlagAckRequested marks reliable DATA: the receiver acknowledges it.
const FlagAckRequested Flags = 0x01

// flagsReserved are the bits that must be zero.
const flagsReserved = ^FlagAckRequested

// Wire sizes and default limits.
const (
	LengthSize      = 4         // the length field
	HeaderSize      = 10        // length + type + flags + seq
	MinLength       = 6         // smallest legal value of the length field
	DefaultMaxFrame = 64 * 1024 // default largest payload (max_frame)
	MaxHelloPayload = 4096      // largest HELLO payload
	MaxPingPayload  = 64        // largest PING/PONG payload
	MaxDeviceIDLen  = 128       // longest device id
	MaxTags         = 16        // most HELLO tags
	Version         = 1         // protocol version spoken here
)

// Header is the fixed 10-byte frame header.
type Header struct {
	Length uint32 // bytes after the length field: 6 + payload size
	Type   Type
	Flags  Flags
	Seq    uint32
}

// PayloadLen is the size of the payload that follows the header.
func (h Header) PayloadLen() int { return int(h.Length) - (HeaderSize - LengthSize) }

// Frame is one decoded frame. Payload aliases the decoder's input.
type Frame struct {
	Type    Type
	Flags   Flags
	Seq     uint32
	Payload []byte
}

// Reliable reports whether the frame asks to be acknowledged.
func (f *Frame) Reliable() bool { return f.Flags&FlagAckRequested != 0 }

// CheckLength validates a length field against the payload limit. It is the
// check made before any byte of the body is read.
func CheckLength(length uint32, maxPayload int) error {
	if length < MinLength {
		return ErrShortLength
	}
	if uint64(length)-(HeaderSize-LengthSize) > uint64(maxPayload) {
		return ErrFrameTooLarge
	}
	return nil
}

// ParseHeader reads the header at the start of b, which holds at least
// HeaderSize bytes. It does not validate it.
func ParseHeader(b []byte) Header {
	_ = b[HeaderSize-1]
	return Header{
		Length: binary.BigEndian.Uint32(b),
		Type:   Type(b[4]),
		Flags:  Flags(b[5]),
		Seq:    binary.BigEndian.Uint32(b[6:]),
	}
}

// Validate checks the header's type and flags (its length is checked by
// CheckLength, earlier).
func (h Header) Validate() error {
	if !h.Type.Known() {
		return ErrUnknownType
	}
	if h.Flags&flagsReserved != 0 {
		return ErrReservedFlags
	}
	return nil
}

// AppendFrame appends one encoded frame to dst and returns the extended slice.
// It allocates only when dst lacks capacity.
func AppendFrame(dst []byte, t Type, flags Flags, seq uint32, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)+HeaderSize-LengthSize))
	dst = append(dst, byte(t), byte(flags))
	dst = binary.BigEndian.AppendUint32(dst, seq)
	return append(dst, payload...)
}

// FrameSize is the encoded size of a frame with an n-byte payload.
func FrameSize(n int) int { return HeaderSize + n }
