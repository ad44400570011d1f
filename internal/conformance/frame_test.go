package conformance

import (
	"errors"
	"fmt"
	"io"
	"testing"
)

// TestFrameRules checks the Frame and Frame types sections: malformed
// lengths, reserved flags, unknown types and oversize frames, before and
// after the handshake.
func TestFrameRules(t *testing.T) { forEachMode(t, testFrameRules) }

func testFrameRules(t *testing.T, m mode) {
	g := startGateway(t, m, gwOptions{})
	t.Run("before_hello", func(t *testing.T) {
		testLengthRules(t, func(t *testing.T) *dev { return dial(t, g) }, typeHello)
		t.Run("reserved_flag_on_hello_400", func(t *testing.T) {
			d := dial(t, g)
			d.send(typeHello, 0x02, 0, pack(helloFields(newID("flags"))))
			d.expectError(codeBadRequest)
		})
	})
	t.Run("after_welcome", func(t *testing.T) {
		testLengthRules(t, func(t *testing.T) *dev { return connect(t, g) }, typeData)
		for _, typ := range []byte{0x00, 0x05, 0x0f, 0x12, 0x21, 0x7e, 0x80, 0xff} {
			t.Run(fmt.Sprintf("unknown_type_%#02x_400", typ), func(t *testing.T) {
				d := connect(t, g)
				d.send(typ, 0, 0, nil)
				d.expectError(codeBadRequest)
			})
		}
		for _, fl := range []byte{0x02, 0x04, 0x40, 0x80, 0xff} {
			t.Run(fmt.Sprintf("reserved_flag_%#02x_on_data_400", fl), func(t *testing.T) {
				d := connect(t, g)
				d.send(typeData, fl, 1, []byte("x"))
				d.expectError(codeBadRequest)
			})
		}
		t.Run("reserved_flag_on_ping_400", func(t *testing.T) {
			d := connect(t, g)
			d.send(typePing, 0x10, 0, nil)
			d.expectError(codeBadRequest)
		})
		t.Run("reserved_flag_on_ack_400", func(t *testing.T) {
			d := connect(t, g)
			d.send(typeAck, 0x08, 0, nil)
			d.expectError(codeBadRequest)
		})
	})
	t.Run("error_frame_layout_then_eof", func(t *testing.T) { testErrorLayout(t, g) })
}

// testLengthRules runs the length checks on a connection from open; typ is
// a type that is valid at that point.
func testLengthRules(t *testing.T, open func(*testing.T) *dev, typ byte) {
	t.Run("length_0_400", func(t *testing.T) {
		d := open(t)
		d.write([]byte{0, 0, 0, 0})
		d.expectError(codeBadRequest)
	})
	t.Run("length_5_400", func(t *testing.T) {
		d := open(t)
		d.write(header(5, typ, 0, 0)[:4+5]) // the 5 bytes the length announces
		d.expectError(codeBadRequest)
	})
	t.Run("oversize_length_field_alone_413_promptly", func(t *testing.T) {
		// "rejected with error 413 as soon as the length field is read"
		d := open(t)
		d.write(header(lengthOverhead+defaultMaxFrame+1, typ, 0, 0)[:4])
		d.expectErrorWithin(codeTooLarge, promptTimeout)
	})
	oversize := map[string]uint32{
		"max_frame_plus_1": lengthOverhead + defaultMaxFrame + 1,
		"max_uint32":       0xFFFFFFFF,
	}
	for name, length := range oversize {
		t.Run("oversize_header_only_"+name+"_413_promptly", func(t *testing.T) {
			d := open(t)
			d.write(header(length, typ, 0, 0)) // the body is never sent
			d.expectErrorWithin(codeTooLarge, promptTimeout)
		})
	}
}

// testErrorLayout checks one ERROR byte by byte: type 0x7F, flags 0, seq 0,
// a map with code int and message str, then a clean close (EOF).
func testErrorLayout(t *testing.T, g *gateway) {
	d := connect(t, g)
	d.send(0x42, 0, 0, nil)
	f, err := d.readRaw(replyTimeout)
	if err != nil {
		t.Fatalf("want ERROR 400: %v", err)
	}
	if f.typ != typeError || f.flags != 0 || f.seq != 0 {
		t.Fatalf("got %v, want type 0x7f flags 0 seq 0", f)
	}
	m, err := decodeMap(f.payload)
	if err != nil {
		t.Fatalf("ERROR payload: %v", err)
	}
	if code, err := mapInt(m, "code"); err != nil || code != codeBadRequest {
		t.Fatalf("ERROR code: %v %v, want int 400", code, err)
	}
	if _, err := mapStr(m, "message"); err != nil {
		t.Fatalf("ERROR message: %v", err)
	}
	if f, err := d.readRaw(replyTimeout); !errors.Is(err, io.EOF) {
		t.Fatalf("after ERROR: frame %v, err %v; want EOF", f, err)
	}
}
