package main

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// dialBaseline serves one connection of a fresh baseline server over a pipe.
func dialBaseline(t *testing.T) net.Conn {
	t.Helper()
	srv := &server{maxFrame: protocol.DefaultMaxFrame, hb: defaultHeartbeat}
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() { defer close(done); srv.serve(b) }()
	t.Cleanup(func() { a.Close(); <-done })
	a.SetDeadline(time.Now().Add(5 * time.Second))
	return a
}

func send(t *testing.T, c net.Conn, typ protocol.Type, fl protocol.Flags, seq uint32, p []byte) {
	t.Helper()
	if _, err := c.Write(protocol.AppendFrame(nil, typ, fl, seq, p)); err != nil {
		t.Fatal(err)
	}
}

func recv(t *testing.T, c net.Conn) protocol.Frame {
	t.Helper()
	hdr := make([]byte, protocol.HeaderSize)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatal(err)
	}
	h := protocol.ParseHeader(hdr)
	p := make([]byte, h.PayloadLen())
	if _, err := io.ReadFull(c, p); err != nil {
		t.Fatal(err)
	}
	return protocol.Frame{Type: h.Type, Flags: h.Flags, Seq: h.Seq, Payload: p}
}

func hello(t *testing.T, c net.Conn) {
	t.Helper()
	p, _ := protocol.EncodeHello(&protocol.Hello{V: 1, ID: "dev-1"})
	send(t, c, protocol.TypeHello, 0, 0, p)
	if f := recv(t, c); f.Type != protocol.TypeWelcome {
		t.Fatalf("got %s, want WELCOME", f.Type)
	}
}

func TestEcho(t *testing.T) {
	c := dialBaseline(t)
	hello(t, c)
	send(t, c, protocol.TypeData, 0, 0, []byte("hi"))
	if f := recv(t, c); f.Type != protocol.TypeData || string(f.Payload) != "hi" || f.Flags != 0 {
		t.Fatalf("best-effort echo: %+v", f)
	}
	send(t, c, protocol.TypeData, protocol.FlagAckRequested, 1, []byte("r1"))
	if f := recv(t, c); f.Type != protocol.TypeAck || f.Seq != 1 {
		t.Fatalf("want ACK 1, got %+v", f)
	}
	if f := recv(t, c); f.Type != protocol.TypeData || f.Seq != 1 || !f.Reliable() || string(f.Payload) != "r1" {
		t.Fatalf("reliable echo: %+v", f)
	}
	send(t, c, protocol.TypePing, 0, 0, []byte("p"))
	if f := recv(t, c); f.Type != protocol.TypePong || string(f.Payload) != "p" {
		t.Fatalf("want PONG, got %+v", f)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name  string
		hello bool
		raw   []byte
		code  int
	}{
		{"first frame not HELLO", false, protocol.AppendFrame(nil, protocol.TypePing, 0, 0, nil), 400},
		{"short length", true, []byte{0, 0, 0, 2, 0, 0}, 400},
		{"too large", true, binary.BigEndian.AppendUint32(nil, 1<<20), 413},
		{"unknown type", true, protocol.AppendFrame(nil, 0x55, 0, 0, nil), 400},
		{"reserved flag", true, protocol.AppendFrame(nil, protocol.TypeData, 0x80, 0, nil), 400},
		{"second HELLO", true, protocol.AppendFrame(nil, protocol.TypeHello, 0, 0, []byte{0x80}), 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialBaseline(t)
			if tt.hello {
				hello(t, c)
			}
			go c.Write(tt.raw)
			f := recv(t, c)
			var m protocol.ErrorMsg
			if f.Type != protocol.TypeError || protocol.Unmarshal(f.Payload, &m) != nil || m.Code != tt.code {
				t.Fatalf("want ERROR %d, got %s %+v", tt.code, f.Type, m)
			}
		})
	}
}
