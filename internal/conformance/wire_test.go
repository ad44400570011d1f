package conformance

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"

	"github.com/vmihailenco/msgpack/v5"
)

// Frame types (PROTOCOL.md, "Frame types").
const (
	typeHello   byte = 0x01
	typeWelcome byte = 0x02
	typePing    byte = 0x03
	typePong    byte = 0x04
	typeData    byte = 0x10
	typeAck     byte = 0x11
	typeGoaway  byte = 0x20
	typeError   byte = 0x7F
)

// flagAckRequested is flag bit 0; every other flag bit is reserved.
const flagAckRequested byte = 0x01

// Sizes and defaults (PROTOCOL.md, "Frame" and "Defaults").
const (
	headerSize       = 10    // length(4) + type(1) + flags(1) + seq(4)
	lengthOverhead   = 6     // bytes counted by length besides the payload
	defaultMaxFrame  = 65536 // default max_frame, the largest payload
	maxHelloPayload  = 4096  // largest HELLO payload
	defaultHeartbeat = 30    // default hb, seconds
	maxPingPayload   = 64    // largest PING payload
	maxTags          = 16    // most tags in a HELLO
	clientReadLimit  = 1 << 24
)

// Error codes (PROTOCOL.md, "Errors").
const (
	codeBadRequest  = 400
	codeAuth        = 401
	codeTimeout     = 408
	codeTakenOver   = 409
	codeTooLarge    = 413
	codeRateLimited = 429
	codeInternal    = 500
	codeUnavailable = 503
)

// frame is one decoded frame.
type frame struct {
	typ     byte
	flags   byte
	seq     uint32
	payload []byte
}

func typeName(t byte) string {
	switch t {
	case typeHello:
		return "HELLO"
	case typeWelcome:
		return "WELCOME"
	case typePing:
		return "PING"
	case typePong:
		return "PONG"
	case typeData:
		return "DATA"
	case typeAck:
		return "ACK"
	case typeGoaway:
		return "GOAWAY"
	case typeError:
		return "ERROR"
	}
	return fmt.Sprintf("type(%#02x)", t)
}

// String renders a frame for failure messages; map payloads are decoded.
func (f frame) String() string {
	s := fmt.Sprintf("%s flags=%#02x seq=%d len=%d", typeName(f.typ), f.flags, f.seq, len(f.payload))
	switch f.typ {
	case typeWelcome, typeGoaway, typeError:
		if m, err := decodeMap(f.payload); err == nil {
			return s + fmt.Sprintf(" %v", m)
		}
		return s + fmt.Sprintf(" payload=%q", f.payload)
	}
	if len(f.payload) <= 32 {
		return s + fmt.Sprintf(" payload=%q", f.payload)
	}
	return s
}

// appendFrame appends the wire form of a frame to dst.
func appendFrame(dst []byte, typ, flags byte, seq uint32, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(lengthOverhead+len(payload)))
	dst = append(dst, typ, flags)
	dst = binary.BigEndian.AppendUint32(dst, seq)
	return append(dst, payload...)
}

// encodeFrame returns the wire form of one frame.
func encodeFrame(typ, flags byte, seq uint32, payload []byte) []byte {
	return appendFrame(make([]byte, 0, headerSize+len(payload)), typ, flags, seq, payload)
}

// header returns a bare frame header announcing length; no payload follows.
func header(length uint32, typ, flags byte, seq uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, length)
	b = append(b, typ, flags)
	return binary.BigEndian.AppendUint32(b, seq)
}

var errMalformed = errors.New("malformed frame from gateway")

// readFrame reads one frame. A clean EOF before the first byte is io.EOF;
// a frame cut short is io.ErrUnexpectedEOF.
func readFrame(r io.Reader) (frame, error) {
	var h [headerSize]byte
	if _, err := io.ReadFull(r, h[:4]); err != nil {
		return frame{}, err
	}
	length := binary.BigEndian.Uint32(h[:4])
	if length < lengthOverhead {
		return frame{}, fmt.Errorf("%w: length %d < 6", errMalformed, length)
	}
	if length-lengthOverhead > clientReadLimit {
		return frame{}, fmt.Errorf("%w: length %d", errMalformed, length)
	}
	if _, err := io.ReadFull(r, h[4:]); err != nil {
		return frame{}, unexpected(err)
	}
	f := frame{typ: h[4], flags: h[5], seq: binary.BigEndian.Uint32(h[6:])}
	f.payload = make([]byte, length-lengthOverhead)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return frame{}, unexpected(err)
	}
	return f, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// pack encodes a map as MessagePack with sorted keys and compact integers.
// []byte values become bin, strings str, msgpack.RawMessage is copied as is.
func pack(m map[string]any) []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	enc.UseCompactInts(true)
	if err := enc.Encode(m); err != nil {
		panic(fmt.Sprintf("conformance: pack %v: %v", m, err))
	}
	return buf.Bytes()
}

// packValue encodes any single value.
func packValue(v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("conformance: pack %v: %v", v, err))
	}
	return b
}

// decodeMap strictly decodes a gateway map payload: the payload must be
// exactly one MessagePack map whose keys are all str.
func decodeMap(payload []byte) (map[string]any, error) {
	if len(payload) == 0 {
		return nil, errors.New("empty payload, want a map")
	}
	if c := payload[0]; !(c >= 0x80 && c <= 0x8f) && c != 0xde && c != 0xdf {
		return nil, fmt.Errorf("payload starts with %#02x, not a MessagePack map", c)
	}
	// msgpack's DecodeInterface sizes a slice or map by the length the
	// input declares (an array header claiming 2^31 elements allocates
	// 32 GB before reading one), so the payload is first walked with
	// Skip, which allocates nothing: once it is known to be complete,
	// every declared length is bounded by the bytes that are there.
	if err := wellFormed(payload); err != nil {
		return nil, err
	}
	r := bytes.NewReader(payload)
	dec := msgpack.NewDecoder(r)
	n, err := dec.DecodeMapLen()
	if err != nil {
		return nil, fmt.Errorf("decode map: %w", err)
	}
	m := make(map[string]any, min(n, 64))
	for range n {
		k, err := dec.DecodeInterface()
		if err != nil {
			return nil, fmt.Errorf("decode map key: %w", err)
		}
		ks, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("map key %v is %T, want str", k, k)
		}
		if m[ks], err = dec.DecodeInterface(); err != nil {
			return nil, fmt.Errorf("decode map value %q: %w", ks, err)
		}
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%d trailing bytes after the map", r.Len())
	}
	return m, nil
}

// wellFormed reports whether payload is exactly one complete MessagePack
// value.
func wellFormed(payload []byte) error {
	r := bytes.NewReader(payload)
	if err := msgpack.NewDecoder(r).Skip(); err != nil {
		return fmt.Errorf("malformed MessagePack: %w", err)
	}
	if r.Len() != 0 {
		return fmt.Errorf("%d trailing bytes after the map", r.Len())
	}
	return nil
}

// asInt reports v as an integer if it was encoded as any MessagePack int.
func asInt(v any) (int64, bool) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if u := rv.Uint(); u <= 1<<63-1 {
			return int64(u), true
		}
	}
	return 0, false
}

// fieldErr describes a missing or mistyped map field.
func fieldErr(m map[string]any, key, want string) error {
	v, ok := m[key]
	if !ok {
		return fmt.Errorf("key %q missing (want %s) in %v", key, want, m)
	}
	return fmt.Errorf("key %q is %T %v, want %s", key, v, v, want)
}

func mapInt(m map[string]any, key string) (int64, error) {
	if n, ok := asInt(m[key]); ok {
		return n, nil
	}
	return 0, fieldErr(m, key, "int")
}

func mapStr(m map[string]any, key string) (string, error) {
	if s, ok := m[key].(string); ok {
		return s, nil
	}
	return "", fieldErr(m, key, "str")
}

func mapBin(m map[string]any, key string) ([]byte, error) {
	if b, ok := m[key].([]byte); ok {
		return b, nil
	}
	return nil, fieldErr(m, key, "bin")
}

func mapBool(m map[string]any, key string) (bool, error) {
	if b, ok := m[key].(bool); ok {
		return b, nil
	}
	return false, fieldErr(m, key, "bool")
}
