package conformance

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
)

// These tests check the suite's own codec and helpers, without a gateway.

func TestCodecExactBytes(t *testing.T) {
	got := encodeFrame(typeData, flagAckRequested, 0x01020304, []byte("ab"))
	want := []byte{0, 0, 0, 8, 0x10, 0x01, 1, 2, 3, 4, 'a', 'b'}
	if !bytes.Equal(got, want) {
		t.Fatalf("encodeFrame = % x, want % x", got, want)
	}
	f, err := readFrame(bytes.NewReader(want))
	if err != nil || f.typ != typeData || f.flags != 1 || f.seq != 0x01020304 || string(f.payload) != "ab" {
		t.Fatalf("readFrame = %v, %v", f, err)
	}
	if h := header(6, typePing, 0, 0); !bytes.Equal(h, []byte{0, 0, 0, 6, 3, 0, 0, 0, 0, 0}) {
		t.Fatalf("header = % x", h)
	}
}

func TestCodecErrors(t *testing.T) {
	if _, err := readFrame(bytes.NewReader(nil)); !errors.Is(err, io.EOF) {
		t.Fatalf("empty stream: %v, want EOF", err)
	}
	if _, err := readFrame(bytes.NewReader([]byte{0, 0, 0, 8, 0x10})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut frame: %v, want ErrUnexpectedEOF", err)
	}
	if _, err := readFrame(bytes.NewReader([]byte{0, 0, 0, 5, 1, 2, 3, 4, 5})); !errors.Is(err, errMalformed) {
		t.Fatalf("length 5: %v, want errMalformed", err)
	}
}

func TestDecodeMapStrict(t *testing.T) {
	if _, err := decodeMap(pack(map[string]any{"a": 1})); err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{
		"array":       packValue([]int{1}),
		"nil":         packValue(nil),
		"bin_key":     {0x81, 0xc4, 0x01, 'a', 0x01},
		"int_key":     {0x81, 0x01, 0x01},
		"trailing":    append(pack(map[string]any{"a": 1}), 0x00),
		"empty":       nil,
		"truncated":   {0x82, 0xa1, 'a'},
		"map32_empty": {0xdf, 0xff, 0xff, 0xff, 0xff},
	}
	for name, b := range bad {
		if m, err := decodeMap(b); err == nil {
			t.Errorf("%s: decodeMap(% x) = %v, want an error", name, b, m)
		}
	}
	m, _ := decodeMap(pack(map[string]any{"s": "x", "b": []byte("x"), "i": 300, "n": -5, "t": true}))
	if _, err := mapStr(m, "b"); err == nil {
		t.Error("bin accepted as str")
	}
	if _, err := mapBin(m, "s"); err == nil {
		t.Error("str accepted as bin")
	}
	if i, err := mapInt(m, "i"); err != nil || i != 300 {
		t.Errorf("int 300: %d %v", i, err)
	}
	if i, err := mapInt(m, "n"); err != nil || i != -5 {
		t.Errorf("int -5: %d %v", i, err)
	}
}

// TestDevAgainstFakeGateway runs the dev helpers against a scripted server.
func TestDevAgainstFakeGateway(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() { done <- fakeGateway(ln) }()
	d := dial(t, &gateway{addr: ln.Addr().String()})
	w := d.handshake(helloFields("fake-1"))
	if w.session != "s1" || w.hb != 30 || w.maxFrame != defaultMaxFrame || w.last != 0 {
		t.Fatalf("welcome %+v", w)
	}
	d.ping([]byte("p"))
	d.sendReliable(1, []byte("x"))
	requireReliable(t, d.collect(1, 1), 1, []string{"x"})
	d.expectError(codeBadRequest)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// fakeGateway answers HELLO (and PINGs the client), one PING, one
// reliable DATA, then sends ERROR 400 and closes.
func fakeGateway(ln net.Listener) error {
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	if f, err := readFrame(c); err != nil || f.typ != typeHello {
		return errors.Join(err, errors.New("want HELLO"))
	}
	welcome := pack(map[string]any{"session": "s1", "resume": []byte{1, 2}, "hb": 30,
		"max_frame": defaultMaxFrame, "node": "n", "resumed": false, "last": 0, "extra": "ignored"})
	var out []byte
	out = appendFrame(out, typeWelcome, 0, 0, welcome)
	out = appendFrame(out, typePing, 0, 0, []byte("gw"))
	c.Write(out)
	f, err := readFrame(c) // the client's PING crosses the gateway's
	if err != nil || f.typ != typePing {
		return errors.Join(err, errors.New("want PING"))
	}
	if f, err := readFrame(c); err != nil || f.typ != typePong || string(f.payload) != "gw" {
		return errors.Join(err, errors.New("want PONG gw"))
	}
	c.Write(encodeFrame(typePong, 0, 0, f.payload))
	if f, err = readFrame(c); err != nil || f.typ != typeData {
		return errors.Join(err, errors.New("want DATA"))
	}
	out = appendFrame(nil, typeAck, 0, 1, nil)
	out = appendFrame(out, typeData, flagAckRequested, 1, f.payload)
	c.Write(out)
	if f, err = readFrame(c); err != nil || f.typ != typeAck || f.seq != 1 {
		return errors.Join(err, errors.New("want ACK 1"))
	}
	c.Write(encodeFrame(typeError, 0, 0, pack(map[string]any{"code": 400, "message": "bye"})))
	return nil
}

// TestDecodeMapDeclaredLengths feeds the suite's map decoder containers
// whose headers claim far more elements than the payload holds: each must
// be an error, not a 32 GB allocation (msgpack's DecodeInterface trusts
// the header; the CI fuzz run of FuzzReadFrame found it).
func TestDecodeMapDeclaredLengths(t *testing.T) {
	for _, p := range [][]byte{
		{0x81, 0xa1, 'a', 0xdd, 0x7f, 0xff, 0xff, 0xff},             // array32 of 2^31-1
		{0x81, 0xa1, 'a', 0xdf, 0x7f, 0xff, 0xff, 0xff},             // map32 of 2^31-1
		{0xdf, 0x7f, 0xff, 0xff, 0xff, 0xa1, 'a', 0x01},             // top-level map32
		{0x81, 0xa1, 'a', 0x91, 0xdc, 0xff, 0xff, 0x91, 0xdd, 0x7f}, // nested and cut
	} {
		if m, err := decodeMap(p); err == nil {
			t.Errorf("decodeMap(% x) = %v, want an error", p, m)
		}
	}
}

// FuzzReadFrame checks the suite's decoder never panics and round-trips.
func FuzzReadFrame(f *testing.F) {
	f.Add(encodeFrame(typeHello, 0, 0, pack(helloFields("seed"))))
	f.Add(encodeFrame(typeData, flagAckRequested, 7, []byte("payload")))
	f.Add([]byte{0, 0, 0, 5, 1})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := readFrame(bytes.NewReader(b))
		if err != nil {
			return
		}
		re := encodeFrame(fr.typ, fr.flags, fr.seq, fr.payload)
		if !bytes.Equal(re, b[:len(re)]) {
			t.Fatalf("round trip % x != % x", re, b[:len(re)])
		}
		_, _ = decodeMap(fr.payload)
	})
}
