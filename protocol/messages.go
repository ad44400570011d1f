package protocol

import (
	"bytes"
	"errors"
	"io"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Hello is the HELLO map a device opens with.
type Hello struct {
	V      int               // protocol version, must be 1
	ID     string            // device id: 1–128 bytes of printable ASCII, no spaces
	Token  string            // auth token "<exp>.<sig>", when the gateway enforces auth
	Resume []byte            // resume token from an earlier WELCOME
	Last   uint32            // highest downstream DATA seq received (with Resume)
	Tags   map[string]string // device attributes, at most 16
}

// Welcome is the gateway's answer to a good HELLO.
type Welcome struct {
	Session  string `msgpack:"session"`
	Resume   []byte `msgpack:"resume"`
	HB       int    `msgpack:"hb"`
	MaxFrame int    `msgpack:"max_frame"`
	Node     string `msgpack:"node"`
	Resumed  bool   `msgpack:"resumed"`
	Last     uint32 `msgpack:"last"`
}

// GoAway asks a device to reconnect elsewhere.
type GoAway struct {
	Reason   string   `msgpack:"reason"`
	RetryMS  int      `msgpack:"retry_ms"`
	Redirect []string `msgpack:"redirect"`
}

// ErrorMsg is the payload of an ERROR frame.
type ErrorMsg struct {
	Code    int    `msgpack:"code"`
	Message string `msgpack:"message"`
	// RetryMS, an extension of PROTOCOL.md's ERROR map (whose unknown keys
	// clients ignore), is set on a 503 from an overloaded gateway: the
	// device should not come back sooner than about this (docs/protocol.md).
	RetryMS int `msgpack:"retry_ms,omitempty"`
}

// Errors of HELLO decoding, all 400 except the size (413), which is checked
// last among the structural rules (PROTOCOL.md, "Handshake" step 5).
var (
	ErrHelloNotMap    = BadRequest("hello: not a map")
	ErrHelloVersion   = BadRequest("hello: missing or unsupported v")
	ErrHelloID        = BadRequest("hello: bad id")
	ErrHelloTags      = BadRequest("hello: bad tags")
	ErrHelloField     = BadRequest("hello: field of wrong type")
	ErrHelloTrailing  = BadRequest("hello: trailing bytes")
	ErrHelloMalformed = BadRequest("hello: malformed MessagePack")
)

// DecodeHello decodes and validates a HELLO payload in the order the
// contract fixes: structure (400), then size (413). Unknown keys are ignored.
func DecodeHello(p []byte) (Hello, error) {
	var h Hello
	if len(p) == 0 || !isMapCode(p[0]) {
		return Hello{}, ErrHelloNotMap
	}
	if _, err := msgpackLen(p, anyDepth); err != nil {
		return Hello{}, ErrHelloMalformed
	}
	hd := getHelloDecoder(p)
	err := hd.decodeMap(p, &h)
	trailing := hd.r.Len() != 0
	hd.put()
	if err != nil {
		return Hello{}, err
	}
	if trailing {
		return Hello{}, ErrHelloTrailing
	}
	if h.V != Version {
		return Hello{}, ErrHelloVersion
	}
	if !ValidDeviceID(h.ID) {
		return Hello{}, ErrHelloID
	}
	if len(p) > MaxHelloPayload {
		return Hello{}, ErrHelloTooLarge
	}
	return h, nil
}

// A helloDecoder is DecodeHello's reader and decoder, kept in a pool: a
// gateway decodes one HELLO per handshake, and a new decoder each time
// was a fifth of the garbage its own handshake code made.
type helloDecoder struct {
	r bytes.Reader
	d *msgpack.Decoder
}

var helloDecoders = sync.Pool{New: func() any {
	hd := new(helloDecoder)
	hd.d = msgpack.NewDecoder(&hd.r)
	return hd
}}

func getHelloDecoder(p []byte) *helloDecoder {
	hd := helloDecoders.Get().(*helloDecoder)
	hd.r.Reset(p)
	hd.d.Reset(&hd.r) // whatever state a failed decode left
	return hd
}

// put returns hd to the pool, holding nothing of the HELLO it decoded
// (every value decoded from it was copied).
func (hd *helloDecoder) put() {
	hd.r.Reset(nil)
	helloDecoders.Put(hd)
}

// decodeMap decodes the HELLO map p, which msgpackLen has accepted, into h.
func (hd *helloDecoder) decodeMap(p []byte, h *Hello) error {
	d := hd.d
	n, err := d.DecodeMapLen() // DecodeHello checked the first byte is a map
	if err != nil || n < 0 {
		return ErrHelloNotMap
	}
	h.V = -1
	for i := 0; i < n; i++ {
		key, err := decodeStr(d)
		if err != nil {
			return ErrHelloField
		}
		if err := hd.decodeField(p, key, h); err != nil {
			return err
		}
	}
	return nil
}

// skip moves past the value at the decoder's position in p. Unlike
// msgpack's Skip it does not recurse, so an unknown key may hold a value
// nested as deep as its bytes allow without growing the stack. The
// decoder reads hd.r directly (a bytes.Reader is an io.ByteScanner, so
// msgpack puts no buffer in between), so the reader's offset is the
// decoder's.
func (hd *helloDecoder) skip(p []byte) error {
	at := len(p) - hd.r.Len()
	n, err := msgpackLen(p[at:], anyDepth)
	if err != nil {
		return err
	}
	_, err = hd.r.Seek(int64(n), io.SeekCurrent)
	return err
}

func (hd *helloDecoder) decodeField(p []byte, key string, h *Hello) error {
	d := hd.d
	var err error
	switch key {
	case "v":
		var v int64
		if v, err = decodeInt(d); err != nil {
			return ErrHelloVersion
		}
		if v != Version {
			return ErrHelloVersion
		}
		h.V = int(v)
	case "id":
		if h.ID, err = decodeStr(d); err != nil {
			return ErrHelloID
		}
	case "token":
		h.Token, err = decodeStr(d)
	case "resume":
		h.Resume, err = d.DecodeBytes()
	case "last":
		var v int64
		if v, err = decodeInt(d); err == nil && (v < 0 || v > 1<<32-1) {
			err = ErrHelloField
		}
		h.Last = uint32(v)
	case "tags":
		return decodeTags(d, h)
	default:
		err = hd.skip(p)
	}
	if err != nil {
		return ErrHelloField
	}
	return nil
}

func decodeTags(d *msgpack.Decoder, h *Hello) error {
	if c, err := d.PeekCode(); err == nil && c == msgpcode.Nil {
		_ = d.Skip()
		return nil
	}
	n, err := d.DecodeMapLen()
	if err != nil || n > MaxTags {
		return ErrHelloTags
	}
	if n <= 0 {
		return nil
	}
	h.Tags = make(map[string]string, n)
	for i := 0; i < n; i++ {
		k, err := decodeStr(d)
		if err != nil {
			return ErrHelloTags
		}
		v, err := decodeStr(d)
		if err != nil {
			return ErrHelloTags
		}
		h.Tags[k] = v
	}
	return nil
}

// decodeStr accepts only the msgpack str family.
func decodeStr(d *msgpack.Decoder) (string, error) {
	c, err := d.PeekCode()
	if err != nil {
		return "", err
	}
	if !msgpcode.IsFixedString(c) && c != msgpcode.Str8 && c != msgpcode.Str16 && c != msgpcode.Str32 {
		return "", errNotStr
	}
	return d.DecodeString()
}

// decodeInt accepts only the msgpack integer family.
func decodeInt(d *msgpack.Decoder) (int64, error) {
	c, err := d.PeekCode()
	if err != nil {
		return 0, err
	}
	if !msgpcode.IsFixedNum(c) && (c < msgpcode.Uint8 || c > msgpcode.Int64) {
		return 0, errNotInt
	}
	return d.DecodeInt64()
}

var (
	errNotStr = errors.New("not a str")
	errNotInt = errors.New("not an int")
)

// ValidDeviceID reports whether id is 1–128 bytes of printable ASCII
// without spaces (0x21–0x7E).
func ValidDeviceID(id string) bool {
	if len(id) == 0 || len(id) > MaxDeviceIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7E {
			return false
		}
	}
	return true
}

// EncodeHello encodes a HELLO map. Empty optional fields are left out.
func EncodeHello(h *Hello) ([]byte, error) {
	m := map[string]any{"v": h.V, "id": h.ID}
	if h.Token != "" {
		m["token"] = h.Token
	}
	if len(h.Resume) > 0 {
		m["resume"] = h.Resume
		m["last"] = h.Last
	}
	if len(h.Tags) > 0 {
		m["tags"] = h.Tags
	}
	return msgpack.Marshal(m)
}

// Marshal encodes one of the S→C maps (Welcome, GoAway, ErrorMsg).
func Marshal(v any) ([]byte, error) { return msgpack.Marshal(v) }

// AppendWelcome appends w encoded as Marshal encodes it, byte for byte
// (TestAppendWelcomeIsMarshal), without reflection and without garbage:
// one WELCOME per handshake. The fields go out in Welcome's order, each
// with msgpack's encoding for its type (compact ints, a fixed 4-byte
// uint32, nil for a nil []byte).
func AppendWelcome(dst []byte, w *Welcome) []byte {
	we := welcomeEncoders.Get().(*welcomeEncoder)
	we.buf.Reset()
	e := we.enc
	_ = e.EncodeMapLen(7)
	_ = e.EncodeString("session")
	_ = e.EncodeString(w.Session)
	_ = e.EncodeString("resume")
	_ = e.EncodeBytes(w.Resume)
	_ = e.EncodeString("hb")
	_ = e.EncodeInt(int64(w.HB))
	_ = e.EncodeString("max_frame")
	_ = e.EncodeInt(int64(w.MaxFrame))
	_ = e.EncodeString("node")
	_ = e.EncodeString(w.Node)
	_ = e.EncodeString("resumed")
	_ = e.EncodeBool(w.Resumed)
	_ = e.EncodeString("last")
	_ = e.EncodeUint32(w.Last)
	dst = append(dst, we.buf.Bytes()...)
	if we.buf.Cap() <= 4<<10 {
		welcomeEncoders.Put(we)
	}
	return dst
}

// welcomeEncoder is AppendWelcome's encoder and the buffer it writes to
// (a bytes.Buffer never fails a write: the errors above are nil).
type welcomeEncoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

var welcomeEncoders = sync.Pool{New: func() any {
	we := new(welcomeEncoder)
	we.enc = msgpack.NewEncoder(&we.buf)
	return we
}}

// Unmarshal decodes a map payload into v, ignoring unknown keys. The
// payload is walked first (msgpackLen), so no declared length the bytes do
// not back reaches msgpack's allocator.
func Unmarshal(p []byte, v any) error {
	if len(p) == 0 {
		return nil // an empty payload leaves v as it is
	}
	if _, err := msgpackLen(p, MaxMsgpackDepth); err != nil {
		return BadRequest("bad map: " + err.Error())
	}
	if err := msgpack.Unmarshal(p, v); err != nil && !errors.Is(err, io.EOF) {
		return BadRequest("bad map: " + err.Error())
	}
	return nil
}

// AppendError appends an ERROR frame with code and msg to dst.
func AppendError(dst []byte, code int, msg string) []byte {
	p, _ := msgpack.Marshal(&ErrorMsg{Code: code, Message: msg})
	return AppendFrame(dst, TypeError, 0, 0, p)
}

// isMapCode reports whether c starts a MessagePack map.
func isMapCode(c byte) bool {
	return msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32
}
