package conformance

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// TestBadInputDoesNotCrash throws hostile input at the gateway on many
// connections, then requires that the process still runs and a fresh device
// still gets WELCOME and echoes.
func TestBadInputDoesNotCrash(t *testing.T) { forEachMode(t, testBadInputDoesNotCrash) }

func testBadInputDoesNotCrash(t *testing.T, m mode) {
	g := startGateway(t, m, gwOptions{})
	t.Run("inputs", func(t *testing.T) {
		for name, b := range rawGarbage() {
			t.Run("raw_"+name, func(t *testing.T) {
				t.Parallel()
				d := dial(t, g)
				_ = d.tryWrite(b) // the gateway may close early
				drain(d, time.Second)
			})
		}
		for name, p := range hostileHellos() {
			t.Run("hello_"+name+"_400", func(t *testing.T) {
				t.Parallel()
				d := dial(t, g)
				d.send(typeHello, 0, 0, p)
				d.expectError(codeBadRequest)
			})
		}
		for name, v := range oddHelloFields() {
			t.Run("hello_"+name+"_welcome_or_400", func(t *testing.T) {
				t.Parallel()
				testOddHello(t, g, name, v)
			})
		}
		for name, b := range oddFramesAfterWelcome() {
			t.Run("after_welcome_"+name, func(t *testing.T) {
				t.Parallel()
				d := connect(t, g)
				_ = d.tryWrite(b)
				drain(d, time.Second)
			})
		}
	})
	g.requireAlive(t)
	d := connect(t, g)
	d.echo([]byte("still alive"))
	d.ping([]byte("still alive"))
}

// drain reads and discards frames until close, error or timeout.
func drain(d *dev, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := d.readRaw(time.Until(deadline)); err != nil {
			return
		}
	}
}

func rawGarbage() map[string][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rng.UintN(256))
	}
	return map[string][]byte{
		"random_4096_bytes": random,
		"http_request":      []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"tls_client_hello":  {0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03},
		"zeros":             make([]byte, 100),
		"truncated_frame":   header(100, typeHello, 0, 0),
		"one_byte":          {0x00},
		"nothing":           nil,
	}
}

// hostileHellos are malformed MessagePack whose length prefixes would make a
// naive decoder allocate gigabytes; each is a bad handshake (400).
func hostileHellos() map[string][]byte {
	prefix := func() []byte {
		b := []byte{0x83} // fixmap, 3 entries: v, id, then x
		b = append(b, packValue("v")...)
		b = append(b, 0x01)
		b = append(b, packValue("id")...)
		b = append(b, packValue(newID("hostile"))...)
		return append(b, packValue("x")...)
	}
	huge := []byte{0xff, 0xff, 0xff, 0xff}
	return map[string][]byte{
		"map32_4g_entries": append([]byte{0xdf}, huge...),
		"str32_4g_value":   append(append(prefix(), 0xdb), huge...),
		"bin32_4g_value":   append(append(prefix(), 0xc6), huge...),
		"array32_4g_value": append(append(prefix(), 0xdd), huge...),
		"ext32_4g_value":   append(append(prefix(), 0xc9), append(huge, 0x01)...),
		"map_truncated":    prefix(),
	}
}

// oddHelloFields are mistyped optional fields; PROTOCOL.md does not say
// whether they are 400 or ignored, so either is accepted, but nothing else.
func oddHelloFields() map[string]any {
	deep := append(bytes.Repeat([]byte{0x91}, 2000), 0xc0) // 2000 nested arrays
	return map[string]any{
		"resume_as_str":     "token",
		"last_as_str":       "3",
		"last_negative":     -1,
		"last_max_uint64":   msgpack.RawMessage{0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"tags_as_array":     []any{"a", "b"},
		"tags_int_value":    map[string]any{"ver": 3},
		"tags_nil":          nil,
		"token_as_int":      12345,
		"nested_2000_deep":  msgpack.RawMessage(deep),
		"tags_nested_map":   map[string]any{"a": map[string]any{"b": "c"}},
		"float_nan_unknown": msgpack.RawMessage{0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1},
	}
}

// testOddHello sends a HELLO with one odd field (the key is taken from the
// case name prefix) and accepts WELCOME (then the device must work) or 400.
func testOddHello(t *testing.T, g *gateway, name string, v any) {
	key := map[string]string{
		"resume_as_str": "resume", "last_as_str": "last", "last_negative": "last",
		"last_max_uint64": "last", "tags_as_array": "tags", "tags_int_value": "tags",
		"tags_nil": "tags", "token_as_int": "token", "nested_2000_deep": "x-deep",
		"tags_nested_map": "tags", "float_nan_unknown": "x-float",
	}[name]
	f := helloFields(newID("odd"))
	f[key] = v
	d := dial(t, g)
	r := d.hello(f)
	if r.typ == typeError {
		if e, err := parseError(r); err != nil || e.code != codeBadRequest {
			t.Fatalf("HELLO with %s=%v: %v (%v), want WELCOME or ERROR 400", key, v, r, err)
		}
		d.expectClosed()
		return
	}
	if _, err := parseWelcome(r); err != nil {
		t.Fatalf("HELLO with %s=%v: %v", key, v, err)
	}
	d.echo([]byte("odd but accepted"))
}

// oddFramesAfterWelcome are frames whose handling PROTOCOL.md leaves open.
func oddFramesAfterWelcome() map[string][]byte {
	return map[string][]byte{
		"ack_beyond_anything_sent": encodeFrame(typeAck, 0, 1<<31, nil),
		"ack_with_payload":         encodeFrame(typeAck, 0, 0, []byte("junk")),
		"unsolicited_pong":         encodeFrame(typePong, 0, 0, []byte("pong")),
		"reliable_seq_0":           encodeFrame(typeData, flagAckRequested, 0, []byte("zero")),
		"reliable_seq_gap":         append(encodeFrame(typeData, flagAckRequested, 1, nil), encodeFrame(typeData, flagAckRequested, 5, nil)...),
		"best_effort_seq_99":       encodeFrame(typeData, 0, 99, []byte("x")),
		"client_welcome":           encodeFrame(typeWelcome, 0, 0, pack(map[string]any{"session": "s"})),
		"client_goaway":            encodeFrame(typeGoaway, 0, 0, nil),
		"client_error":             encodeFrame(typeError, 0, 0, pack(map[string]any{"code": 500, "message": "x"})),
		"ping_65_bytes":            encodeFrame(typePing, 0, 0, make([]byte, 65)),
		"truncated_then_close":     header(1000, typeData, 0, 0),
	}
}
