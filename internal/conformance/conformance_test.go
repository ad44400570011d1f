package conformance

// The tests, by PROTOCOL.md section:
//
//	Frame, Frame types, Errors   frame_test.go        TestFrameRules (incl. the ERROR layout)
//	Handshake                    conformance_test.go  TestWelcome, TestHandshake, TestHandshakeTimeout
//	Authentication               auth_test.go         TestAuth
//	Liveness                     liveness_test.go     TestPing, TestIdleTimeout
//	Data and delivery            data_test.go         TestData, TestMaxPayload
//	resume (Handshake, Data)     resume_test.go       TestResume
//	Session takeover, Defaults   session_test.go      TestTakeover, TestConnectionBurst
//	Draining                     drain_test.go        TestDrain
//	bad input never crashes      robust_test.go       TestBadInputDoesNotCrash
//	the suite's own codec        wire_unit_test.go    TestCodec*, TestDecodeMapStrict, FuzzReadFrame
//
// Each test that starts a gateway runs once per mode, as the subtests
// TestX/embedded and TestX/cluster (forEachMode, cluster_test.go); the
// codec tests need no gateway and run once.
//
// Every ERROR the suite expects is checked the same way (dev.expectError):
// type 0x7F, flags 0, seq 0, a map with int code and str message, then close.

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "switchyard-conformance-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "conformance: temp dir: %v\n", err)
		os.Exit(1)
	}
	gatewayBin, err = buildGateway(dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "conformance: FAIL: cannot build the gateway under test: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "conformance: goroutine leak: %v\n", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestWelcome checks Handshake step 3: the WELCOME fields and their types.
func TestWelcome(t *testing.T) { forEachMode(t, testWelcome) }

func testWelcome(t *testing.T, m mode) {
	g := startGateway(t, m, gwOptions{})
	t.Run("default_fields", func(t *testing.T) {
		d := dial(t, g)
		w := d.handshake(helloFields(newID("welcome")))
		if w.hb != defaultHeartbeat || w.maxFrame != defaultMaxFrame || w.resumed || w.last != 0 {
			t.Fatalf("WELCOME hb=%d max_frame=%d resumed=%v last=%d, want hb=%d max_frame=%d resumed=false last=0",
				w.hb, w.maxFrame, w.resumed, w.last, defaultHeartbeat, defaultMaxFrame)
		}
	})
	t.Run("sessions_and_tokens_are_distinct", func(t *testing.T) {
		a, b := connect(t, g), connect(t, g)
		if a.w.session == b.w.session || string(a.w.resume) == string(b.w.resume) {
			t.Fatalf("two devices share session %q / resume token %x", a.w.session, a.w.resume)
		}
	})
	t.Run("unknown_hello_keys_ignored", func(t *testing.T) {
		f := helloFields(newID("welcome"))
		f["x-extension"] = "value"
		f["x-number"] = 7
		f["x-map"] = map[string]any{"nested": []any{1, "two"}}
		dial(t, g).handshake(f)
	})
	t.Run("token_ignored_without_auth", func(t *testing.T) {
		f := helloFields(newID("welcome"))
		f["token"] = "not-a-token"
		dial(t, g).handshake(f)
	})
	t.Run("tags_16_accepted", func(t *testing.T) {
		f := helloFields(newID("welcome"))
		f["tags"] = tags(maxTags, 8)
		dial(t, g).handshake(f)
	})
	t.Run("flags_set_hb_max_frame_node", func(t *testing.T) {
		g2 := startGateway(t, m, gwOptions{heartbeat: 7, maxFrame: flagMaxFrame, node: "conf-node-a"})
		w := dial(t, g2).handshake(helloFields(newID("welcome")))
		if w.hb != 7 || w.maxFrame != flagMaxFrame || w.node != "conf-node-a" {
			t.Fatalf("WELCOME hb=%d max_frame=%d node=%q, want hb=7 max_frame=5000 node=%q (the flags)",
				w.hb, w.maxFrame, w.node, "conf-node-a")
		}
	})
}

// flagMaxFrame is the --max-frame the suite sets. PROTOCOL.md sets no
// minimum, but a max_frame below the 4096-byte HELLO limit would make valid
// HELLOs oversize frames, so the suite stays above it (the gateway refuses
// to start with less than 4096).
const flagMaxFrame = 5000

// tags returns n str→str tags with values of size bytes.
func tags(n, size int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%02d", i)] = strings.Repeat("v", size)
	}
	return m
}

// helloPadded packs fields plus an unknown "pad" str key so that the HELLO
// payload is exactly size bytes.
func helloPadded(t testing.TB, fields map[string]any, size int) []byte {
	t.Helper()
	m := make(map[string]any, len(fields)+1)
	for k, v := range fields {
		m[k] = v
	}
	n := size - len(pack(fields)) - 8
	for range 5 {
		if n < 0 {
			break
		}
		m["pad"] = strings.Repeat("p", n)
		b := pack(m)
		if len(b) == size {
			return b
		}
		n += size - len(b)
	}
	t.Fatalf("cannot pad HELLO %v to %d bytes", fields, size)
	return nil
}

// TestHandshake checks Handshake steps 1, 2, 4 and 5 (except timeouts).
func TestHandshake(t *testing.T) { forEachMode(t, testHandshake) }

func testHandshake(t *testing.T, m mode) {
	g := startGateway(t, m, gwOptions{})
	for _, typ := range []byte{typeData, typePing, typePong, typeAck} {
		t.Run("first_frame_"+typeName(typ)+"_400", func(t *testing.T) {
			d := dial(t, g)
			d.send(typ, 0, 0, nil)
			d.expectError(codeBadRequest)
		})
	}
	t.Run("ping_with_payload_before_hello_400", func(t *testing.T) {
		d := dial(t, g)
		d.send(typePing, 0, 0, []byte("early"))
		d.expectError(codeBadRequest)
	})
	t.Run("second_hello_400", func(t *testing.T) {
		d := connect(t, g)
		d.send(typeHello, 0, 0, pack(helloFields(d.id)))
		d.expectError(codeBadRequest)
	})
	t.Run("structure", func(t *testing.T) { testHelloStructure(t, g) })
	t.Run("accepted", func(t *testing.T) { testHelloAccepted(t, g) })
	t.Run("size_and_order", func(t *testing.T) { testHelloSize(t, g) })
}

// badHellos are HELLO payloads that break step 2; each must get 400.
func badHellos() []struct {
	name    string
	payload []byte
} {
	id := func() string { return newID("bad") }
	with := func(k string, v any) []byte {
		f := helloFields(id())
		f[k] = v
		return pack(f)
	}
	return []struct {
		name    string
		payload []byte
	}{
		{"not_a_map_array", packValue([]any{1, "dev"})},
		{"not_a_map_str", packValue("hello")},
		{"not_a_map_int", packValue(1)},
		{"not_a_map_nil", packValue(nil)},
		{"empty_payload", nil},
		{"invalid_msgpack", []byte{0xc1}},
		{"truncated_map", pack(helloFields(id()))[:6]},
		{"missing_v", pack(map[string]any{"id": id()})},
		{"v_2", with("v", 2)},
		{"v_0", with("v", 0)},
		{"v_str", with("v", "1")},
		{"v_float", with("v", 1.0)},
		{"v_nil", with("v", nil)},
		{"missing_id", pack(map[string]any{"v": 1})},
		{"id_empty", with("id", "")},
		{"id_129_bytes", with("id", strings.Repeat("a", 129))},
		{"id_space", with("id", "dev 1")},
		{"id_tab", with("id", "dev\t1")},
		{"id_control_char", with("id", "dev\x01")},
		{"id_del", with("id", "dev\x7f")},
		{"id_non_ascii", with("id", "dév")},
		{"id_not_str", with("id", 42)},
		{"tags_17", with("tags", tags(maxTags+1, 4))},
	}
}

func testHelloStructure(t *testing.T, g *gateway) {
	for _, c := range badHellos() {
		t.Run(c.name+"_400", func(t *testing.T) {
			d := dial(t, g)
			d.send(typeHello, 0, 0, c.payload)
			d.expectError(codeBadRequest)
		})
	}
}

// testHelloAccepted covers the edges of step 2 that must be accepted.
func testHelloAccepted(t *testing.T, g *gateway) {
	wide := map[string][]byte{
		"uint8": {0xcc, 1}, "uint16": {0xcd, 0, 1}, "uint32": {0xce, 0, 0, 0, 1},
		"int8": {0xd0, 1}, "int64": {0xd3, 0, 0, 0, 0, 0, 0, 0, 1},
	}
	for name, raw := range wide {
		t.Run("v_encoded_as_"+name, func(t *testing.T) {
			f := helloFields(newID("wide"))
			f["v"] = msgpack.RawMessage(raw)
			dial(t, g).handshake(f)
		})
	}
	t.Run("id_128_bytes", func(t *testing.T) {
		id := newID("x")
		dial(t, g).handshake(helloFields(id + strings.Repeat("x", 128-len(id))))
	})
	t.Run("id_all_printable_ascii", func(t *testing.T) {
		var b strings.Builder
		for c := byte('!'); c <= '~'; c++ {
			b.WriteByte(c)
		}
		dial(t, g).handshake(helloFields(newID("p") + b.String()))
	})
	t.Run("id_1_byte", func(t *testing.T) {
		dial(t, g).handshake(helloFields("Z"))
	})
	t.Run("last_and_tags_present", func(t *testing.T) {
		f := helloFields(newID("full"))
		f["last"] = 0
		f["tags"] = map[string]string{"ver": "1.2.3", "region": "eu", "model": "m1"}
		dial(t, g).handshake(f)
	})
}

// testHelloSize covers the 4096-byte HELLO limit and the order of step 5.
func testHelloSize(t *testing.T, g *gateway) {
	t.Run("exactly_4096_accepted", func(t *testing.T) {
		f := helloFields(newID("size"))
		d := dial(t, g)
		if w, err := parseWelcome(d.helloRaw(f, helloPadded(t, f, maxHelloPayload))); err != nil {
			t.Fatalf("4096-byte HELLO: %v (WELCOME %+v)", err, w)
		}
	})
	oversize := func(name string, mutate func(map[string]any), code int64) {
		t.Run(name, func(t *testing.T) {
			f := helloFields(newID("size"))
			mutate(f)
			d := dial(t, g)
			d.send(typeHello, 0, 0, helloPadded(t, f, maxHelloPayload+1))
			d.expectError(code)
		})
	}
	oversize("valid_4097_bytes_413", func(map[string]any) {}, codeTooLarge)
	oversize("missing_v_and_oversize_400", func(f map[string]any) { delete(f, "v") }, codeBadRequest)
	oversize("bad_id_and_oversize_400", func(f map[string]any) { f["id"] = "has space" }, codeBadRequest)
	oversize("tags_17_and_oversize_400", func(f map[string]any) { f["tags"] = tags(maxTags+1, 4) }, codeBadRequest)
	t.Run("valid_oversize_via_tags_413", func(t *testing.T) {
		f := helloFields(newID("size"))
		f["tags"] = tags(maxTags, 300)
		d := dial(t, g)
		d.send(typeHello, 0, 0, pack(f))
		d.expectError(codeTooLarge)
	})
	t.Run("not_a_map_and_oversize_400", func(t *testing.T) {
		d := dial(t, g)
		d.send(typeHello, 0, 0, packValue(strings.Repeat("s", 5000)))
		d.expectError(codeBadRequest)
	})
}

// TestHandshakeTimeout checks Handshake step 1: nothing within
// handshake_timeout is ERROR 408, then close.
func TestHandshakeTimeout(t *testing.T) { forEachMode(t, testHandshakeTimeout) }

func testHandshakeTimeout(t *testing.T, m mode) {
	if testing.Short() {
		t.Skip("waits out handshake timeouts")
	}
	fast := startGateway(t, m, gwOptions{handshakeTimeout: time.Second})
	def := startGateway(t, m, gwOptions{})
	t.Run("silent_1s_408", func(t *testing.T) {
		t.Parallel()
		expectHandshakeTimeout(t, dial(t, fast), 800*time.Millisecond, 3*time.Second)
	})
	t.Run("partial_first_frame_1s_408", func(t *testing.T) {
		t.Parallel()
		d := dial(t, fast)
		d.write(encodeFrame(typeHello, 0, 0, pack(helloFields(newID("partial"))))[:7])
		expectHandshakeTimeout(t, d, 800*time.Millisecond, 3*time.Second)
	})
	t.Run("default_5s_408", func(t *testing.T) {
		t.Parallel()
		expectHandshakeTimeout(t, dial(t, def), 4500*time.Millisecond, 8*time.Second)
	})
	t.Run("timeout_does_not_apply_after_welcome", func(t *testing.T) {
		t.Parallel()
		d := connect(t, fast)
		time.Sleep(1500 * time.Millisecond) // let the 1 s handshake timeout pass
		d.ping([]byte("still here"))
		d.echo([]byte("still served"))
	})
}

// expectHandshakeTimeout requires ERROR 408 between lo and hi after now.
func expectHandshakeTimeout(t *testing.T, d *dev, lo, hi time.Duration) {
	t.Helper()
	start := time.Now()
	d.expectErrorWithin(codeTimeout, hi)
	if el := time.Since(start); el < lo {
		t.Fatalf("ERROR 408 after %v, before the handshake timeout (want >= %v)", el, lo)
	}
}
