// Package clienttest is a scripted fake Switchyard gateway for tests of
// device clients, in the manner of net/http/httptest.
//
// A Gateway listens on a loopback port. With a nil handler every accepted
// connection is queued for the test, which takes it with Accept and drives
// it frame by frame; with a handler (such as Echo) each connection is served
// by the handler in its own goroutine. Close (registered with t.Cleanup)
// closes the listener and every connection and waits for its goroutines.
package clienttest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// ReadTimeout bounds every read made by Conn, so that a broken test fails
// instead of hanging.
const ReadTimeout = 60 * time.Second

// Gateway is a fake gateway on 127.0.0.1.
type Gateway struct {
	tb       testing.TB
	ln       net.Listener
	handler  func(*Conn)
	queue    chan *Conn
	quit     chan struct{} // closed by Close
	accepted atomic.Int64
	wg       sync.WaitGroup

	mu     sync.Mutex
	conns  map[*Conn]struct{}
	closed bool
}

// NewGateway starts a fake gateway. handler serves each connection; nil
// queues connections for Accept. Close runs at the end of the test.
func NewGateway(tb testing.TB, handler func(*Conn)) *Gateway {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("clienttest: listen: %v", err)
	}
	g := &Gateway{tb: tb, ln: ln, handler: handler, queue: make(chan *Conn, 64), quit: make(chan struct{}), conns: map[*Conn]struct{}{}}
	g.wg.Add(1)
	go g.acceptLoop()
	tb.Cleanup(g.Close)
	return g
}

// Addr is the gateway's host:port.
func (g *Gateway) Addr() string { return g.ln.Addr().String() }

// Accepted is the number of connections accepted so far.
func (g *Gateway) Accepted() int { return int(g.accepted.Load()) }

func (g *Gateway) acceptLoop() {
	defer g.wg.Done()
	for {
		nc, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.accepted.Add(1)
		c := &Conn{Conn: nc, r: bufio.NewReader(nc)}
		if !g.track(c) {
			nc.Close()
			return
		}
		if g.handler == nil {
			select {
			case g.queue <- c:
			case <-g.quit:
				return
			}
			continue
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer nc.Close()
			g.handler(c)
		}()
	}
}

func (g *Gateway) track(c *Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.conns[c] = struct{}{}
	return true
}

// Accept returns the next connection (nil handler only), failing the test
// after ReadTimeout.
func (g *Gateway) Accept() *Conn {
	g.tb.Helper()
	select {
	case c := <-g.queue:
		return c
	case <-time.After(ReadTimeout):
		g.tb.Fatalf("clienttest: no connection within %v", ReadTimeout)
		return nil
	}
}

// Close stops the gateway, closes every connection and waits for its
// goroutines. It is idempotent.
func (g *Gateway) Close() {
	g.mu.Lock()
	if !g.closed {
		close(g.quit)
	}
	g.closed = true
	for c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.ln.Close()
	g.wg.Wait()
}

// Conn is one accepted device connection.
type Conn struct {
	net.Conn
	r   *bufio.Reader
	wmu sync.Mutex
}

// ReadFrame reads one frame; its payload is a copy.
func (c *Conn) ReadFrame() (protocol.Frame, error) {
	_ = c.SetReadDeadline(time.Now().Add(ReadTimeout))
	var hdr [protocol.HeaderSize]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return protocol.Frame{}, err
	}
	h := protocol.ParseHeader(hdr[:])
	if err := protocol.CheckLength(h.Length, 16<<20); err != nil {
		return protocol.Frame{}, err
	}
	if err := h.Validate(); err != nil {
		return protocol.Frame{}, err
	}
	p := make([]byte, h.PayloadLen())
	if _, err := io.ReadFull(c.r, p); err != nil {
		return protocol.Frame{}, err
	}
	return protocol.Frame{Type: h.Type, Flags: h.Flags, Seq: h.Seq, Payload: p}, nil
}

// ReadType reads frames until one of type t, skipping PINGs (answered with
// PONG) and every type in skip.
func (c *Conn) ReadType(t protocol.Type, skip ...protocol.Type) (protocol.Frame, error) {
	for {
		f, err := c.ReadFrame()
		if err != nil || f.Type == t {
			return f, err
		}
		if f.Type == protocol.TypePing {
			if err := c.WriteFrame(protocol.TypePong, 0, 0, f.Payload); err != nil {
				return f, err
			}
			continue
		}
		if !contains(skip, f.Type) {
			return f, fmt.Errorf("clienttest: want %v, got %v seq %d", t, f.Type, f.Seq)
		}
	}
}

func contains(ts []protocol.Type, t protocol.Type) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// ReadHello reads and decodes the HELLO.
func (c *Conn) ReadHello() (protocol.Hello, error) {
	f, err := c.ReadFrame()
	if err != nil {
		return protocol.Hello{}, err
	}
	if f.Type != protocol.TypeHello {
		return protocol.Hello{}, fmt.Errorf("clienttest: want HELLO, got %v", f.Type)
	}
	return protocol.DecodeHello(f.Payload)
}

// WriteFrame writes one frame.
func (c *Conn) WriteFrame(t protocol.Type, flags protocol.Flags, seq uint32, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.Write(protocol.AppendFrame(nil, t, flags, seq, payload))
	return err
}

// WriteMap writes a frame of type t whose payload is v in MessagePack.
func (c *Conn) WriteMap(t protocol.Type, v any) error {
	p, err := protocol.Marshal(v)
	if err != nil {
		return err
	}
	return c.WriteFrame(t, 0, 0, p)
}

// Welcome writes WELCOME w.
func (c *Conn) Welcome(w protocol.Welcome) error { return c.WriteMap(protocol.TypeWelcome, &w) }

// Error writes ERROR with code and msg.
func (c *Conn) Error(code int, msg string) error {
	return c.WriteMap(protocol.TypeError, &protocol.ErrorMsg{Code: code, Message: msg})
}

// GoAway writes GOAWAY g.
func (c *Conn) GoAway(g protocol.GoAway) error { return c.WriteMap(protocol.TypeGoAway, &g) }

// Echo is a handler that behaves like a gateway with the embedded echo
// backend: it welcomes every HELLO as a new session (hb 30 s), acknowledges
// reliable DATA and echoes every DATA, reliable when it was.
func Echo(c *Conn) {
	h, err := c.ReadHello()
	if err != nil {
		_ = c.Error(protocol.CodeBadRequest, err.Error())
		return
	}
	if err := c.Welcome(protocol.Welcome{Session: "s-" + h.ID, Resume: []byte("r-" + h.ID), HB: 30,
		MaxFrame: protocol.DefaultMaxFrame, Node: "clienttest"}); err != nil {
		return
	}
	var down uint32
	for {
		f, err := c.ReadFrame()
		if err != nil {
			return
		}
		switch f.Type {
		case protocol.TypePing:
			err = c.WriteFrame(protocol.TypePong, 0, 0, f.Payload)
		case protocol.TypeData:
			if !f.Reliable() {
				err = c.WriteFrame(protocol.TypeData, 0, 0, f.Payload)
				break
			}
			down++
			if err = c.WriteFrame(protocol.TypeAck, 0, f.Seq, nil); err == nil {
				err = c.WriteFrame(protocol.TypeData, protocol.FlagAckRequested, down, f.Payload)
			}
		}
		if err != nil {
			return
		}
	}
}
