package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
)

// startGateway runs a gateway on free ports for the test.
func startGateway(t *testing.T, cfg Config) *Gateway {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.AdminListen == "" {
		cfg.AdminListen = "127.0.0.1:0"
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Close(ctx)
	})
	return g
}

// dev is a raw test device speaking frames over TCP.
type dev struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dial(t *testing.T, g *Gateway) *dev {
	t.Helper()
	nc, err := net.Dial("tcp", g.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &dev{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (d *dev) write(b []byte) {
	d.t.Helper()
	if _, err := d.nc.Write(b); err != nil {
		d.t.Fatalf("write: %v", err)
	}
}

func (d *dev) send(t protocol.Type, flags protocol.Flags, seq uint32, payload []byte) {
	d.t.Helper()
	d.write(protocol.AppendFrame(nil, t, flags, seq, payload))
}

// read returns the next frame, failing the test if none comes within
// poll.Patience.
func (d *dev) read() protocol.Frame {
	d.t.Helper()
	f, err := d.tryRead(poll.Patience)
	if err != nil {
		d.t.Fatalf("read: %v", err)
	}
	return f
}

func (d *dev) tryRead(timeout time.Duration) (protocol.Frame, error) {
	_ = d.nc.SetReadDeadline(time.Now().Add(timeout))
	var hdr [protocol.HeaderSize]byte
	if _, err := io.ReadFull(d.r, hdr[:]); err != nil {
		return protocol.Frame{}, err
	}
	h := protocol.ParseHeader(hdr[:])
	p := make([]byte, h.PayloadLen())
	if _, err := io.ReadFull(d.r, p); err != nil {
		return protocol.Frame{}, err
	}
	return protocol.Frame{Type: h.Type, Flags: h.Flags, Seq: h.Seq, Payload: p}, nil
}

func (d *dev) hello(h protocol.Hello) protocol.Welcome {
	d.t.Helper()
	if h.V == 0 {
		h.V = 1
	}
	p, err := protocol.EncodeHello(&h)
	if err != nil {
		d.t.Fatal(err)
	}
	d.send(protocol.TypeHello, 0, 0, p)
	f := d.read()
	if f.Type != protocol.TypeWelcome {
		d.t.Fatalf("want WELCOME, got %v %s", f.Type, errText(f))
	}
	var w protocol.Welcome
	if err := protocol.Unmarshal(f.Payload, &w); err != nil {
		d.t.Fatal(err)
	}
	return w
}

// expectError reads until an ERROR and checks its code; when closed is set
// it then checks that the gateway closed the connection.
func (d *dev) expectError(code int, closed bool) {
	d.t.Helper()
	for {
		f := d.read()
		if f.Type != protocol.TypeError {
			continue
		}
		var e protocol.ErrorMsg
		if err := protocol.Unmarshal(f.Payload, &e); err != nil {
			d.t.Fatal(err)
		}
		if e.Code != code {
			d.t.Fatalf("ERROR %d %q, want %d", e.Code, e.Message, code)
		}
		if f.Flags != 0 || f.Seq != 0 {
			d.t.Fatalf("ERROR with flags %x seq %d", f.Flags, f.Seq)
		}
		break
	}
	if closed {
		d.expectClosed()
	}
}

// expectClosed reads (and discards) frames until the gateway closes the
// connection, failing after poll.Patience.
func (d *dev) expectClosed() {
	d.t.Helper()
	deadline := time.Now().Add(poll.Patience)
	for {
		_, err := d.tryRead(time.Until(deadline))
		var ne net.Error
		if err == nil {
			continue
		}
		if errors.As(err, &ne) && ne.Timeout() {
			d.t.Fatalf("connection still open after %v", poll.Patience)
		}
		return
	}
}

func errText(f protocol.Frame) string {
	if f.Type != protocol.TypeError {
		return ""
	}
	var e protocol.ErrorMsg
	_ = protocol.Unmarshal(f.Payload, &e)
	return e.Message
}

func rawHeader(length uint32, t protocol.Type, flags protocol.Flags, seq uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, length)
	b = append(b, byte(t), byte(flags))
	return binary.BigEndian.AppendUint32(b, seq)
}

// waitGoroutinesAtMost waits until the process runs at most max
// goroutines. Handlers that take what came and return do so soon; a
// goroutine held per connection never returns, and fails the test after
// poll.Patience.
func waitGoroutinesAtMost(t *testing.T, max int, what string) {
	t.Helper()
	poll.Until(t, poll.Patience, func() error {
		if n := runtime.NumGoroutine(); n > max {
			return fmt.Errorf("%d goroutines with %s, want at most %d", n, what, max)
		}
		return nil
	})
}

// waitFor polls cond until it holds or poll.Patience passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitForWithin(t, poll.Patience, what, cond)
}

// waitForWithin polls cond until it holds or d passes.
func waitForWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metric returns the value of one series of g's /metrics, named exactly as
// exposed (labels included), or -1 when g does not expose it.
func metric(g *Gateway, series string) float64 {
	var b bytes.Buffer
	g.metrics.set.WritePrometheus(&b)
	for line := range strings.Lines(b.String()) {
		name, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && name == series {
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				return -1
			}
			return v
		}
	}
	return -1
}

// linksUp is how many authenticated links to backend shards g has.
func linksUp(g *Gateway) int { return int(metric(g, "switchyard_backend_links")) }
