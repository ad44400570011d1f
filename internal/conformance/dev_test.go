package conformance

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Reply bounds: generous for a race-enabled CI, but bounded.
const (
	replyTimeout  = 5 * time.Second // any expected reply
	promptTimeout = 3 * time.Second // a reply that must not wait for a body or a timeout
)

var devCounter atomic.Int64

// newID returns a device id unique within this run.
func newID(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), devCounter.Add(1))
}

// helloFields is a minimal valid HELLO map.
func helloFields(id string) map[string]any {
	return map[string]any{"v": 1, "id": id}
}

// dev is one device connection. Its methods fail the test on any deviation,
// so they must be called from the test goroutine.
type dev struct {
	t           testing.TB
	conn        net.Conn
	r           *bufio.Reader
	id          string
	w           welcome
	answerPings bool   // answer gateway PINGs with PONG
	upSent      uint32 // highest upstream reliable seq sent in this session
	lastAck     uint32 // highest upstream ACK received on this connection
	down        uint32 // highest downstream reliable seq received in this session
	downAcked   uint32 // highest downstream seq this client has ACKed
	ackCap      uint32 // the client never ACKs downstream above this
}

// dial opens a connection to the gateway's device port.
func dial(t testing.TB, g *gateway) *dev {
	t.Helper()
	conn, err := net.DialTimeout("tcp", g.addr, replyTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", g.addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &dev{t: t, conn: conn, r: bufio.NewReaderSize(conn, 64<<10), answerPings: true, ackCap: math.MaxUint32}
}

// connect dials and completes the handshake as a fresh device.
func connect(t testing.TB, g *gateway) *dev {
	t.Helper()
	d := dial(t, g)
	d.handshake(helloFields(newID("dev")))
	return d
}

func (d *dev) label() string {
	if d.id == "" {
		return "device (no HELLO yet)"
	}
	return fmt.Sprintf("device %q", d.id)
}

// write sends raw bytes in one call.
func (d *dev) write(b []byte) {
	d.t.Helper()
	if err := d.tryWrite(b); err != nil {
		d.t.Fatalf("%s: write %d bytes: %v", d.label(), len(b), err)
	}
}

func (d *dev) tryWrite(b []byte) error {
	d.conn.SetWriteDeadline(time.Now().Add(replyTimeout))
	_, err := d.conn.Write(b)
	return err
}

// send writes one frame.
func (d *dev) send(typ, flags byte, seq uint32, payload []byte) {
	d.t.Helper()
	if typ == typeData && flags&flagAckRequested != 0 && seq > d.upSent {
		d.upSent = seq
	}
	d.write(encodeFrame(typ, flags, seq, payload))
}

// sendReliable sends DATA with ACK_REQUESTED.
func (d *dev) sendReliable(seq uint32, payload []byte) {
	d.t.Helper()
	d.send(typeData, flagAckRequested, seq, payload)
}

// ack acknowledges downstream DATA up to seq.
func (d *dev) ack(seq uint32) {
	d.t.Helper()
	d.send(typeAck, 0, seq, nil)
	d.downAcked = seq
}

// readRaw reads the next frame as it comes.
func (d *dev) readRaw(timeout time.Duration) (frame, error) {
	d.conn.SetReadDeadline(time.Now().Add(timeout))
	return readFrame(d.r)
}

// next reads the next frame that is not a gateway PING. PING is legal in
// both directions; it is answered when answerPings is set.
func (d *dev) next(timeout time.Duration) (frame, error) {
	deadline := time.Now().Add(timeout)
	for {
		f, err := d.readRaw(time.Until(deadline))
		if err != nil || f.typ != typePing {
			return f, err
		}
		if err := checkControl(f); err != nil {
			return f, err
		}
		if d.answerPings {
			if err := d.tryWrite(encodeFrame(typePong, 0, 0, f.payload)); err != nil {
				return f, fmt.Errorf("answer gateway PING: %w", err)
			}
		}
	}
}

// read returns the next frame, failing the test on timeout or close.
func (d *dev) read() frame {
	d.t.Helper()
	f, err := d.next(replyTimeout)
	if err != nil {
		d.t.Fatalf("%s: reading a frame: %v", d.label(), err)
	}
	return f
}

// hello sends a HELLO map and returns the gateway's reply.
func (d *dev) hello(fields map[string]any) frame {
	d.t.Helper()
	return d.helloRaw(fields, pack(fields))
}

// helloRaw sends payload as HELLO; fields only label the device.
func (d *dev) helloRaw(fields map[string]any, payload []byte) frame {
	d.t.Helper()
	if id, ok := fields["id"].(string); ok && len(id) <= 64 {
		d.id = id
	}
	d.send(typeHello, 0, 0, payload)
	return d.read()
}

// handshake sends HELLO and requires a well-formed WELCOME.
func (d *dev) handshake(fields map[string]any) welcome {
	d.t.Helper()
	f := d.hello(fields)
	w, err := parseWelcome(f)
	if err != nil {
		d.t.Fatalf("%s: HELLO %v: %v", d.label(), fields, err)
	}
	d.w = w
	return w
}

// expectError requires ERROR code as the next frame, then a closed connection.
func (d *dev) expectError(code int64) errorMsg {
	d.t.Helper()
	return d.expectErrorWithin(code, replyTimeout)
}

// expectErrorWithin is expectError with an explicit bound for the ERROR.
func (d *dev) expectErrorWithin(code int64, timeout time.Duration) errorMsg {
	d.t.Helper()
	start := time.Now()
	f, err := d.next(timeout)
	if err != nil {
		d.t.Fatalf("%s: want ERROR %d within %v, got after %v: %v", d.label(), code, timeout, time.Since(start).Round(time.Millisecond), err)
	}
	e, err := parseError(f)
	if err != nil {
		d.t.Fatalf("%s: want ERROR %d: %v", d.label(), code, err)
	}
	if e.code != code {
		d.t.Fatalf("%s: got ERROR %d %q, want ERROR %d", d.label(), e.code, e.message, code)
	}
	if code != codeRateLimited {
		d.expectClosed()
	}
	return e
}

// expectClosed requires that the gateway closes the connection next.
func (d *dev) expectClosed() {
	d.t.Helper()
	f, err := d.readRaw(replyTimeout)
	if err == nil {
		d.t.Fatalf("%s: got %v after ERROR; ERROR must be the last frame before close", d.label(), f)
	}
	if !isClosed(err) {
		d.t.Fatalf("%s: connection not closed after ERROR: %v", d.label(), err)
	}
}

// isClosed reports whether a read error means the peer closed the connection.
// A reset counts as closed: the ERROR frame has already been read by then.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// ping sends PING and requires PONG with the same payload, flags 0, seq 0.
func (d *dev) ping(payload []byte) {
	d.t.Helper()
	d.send(typePing, 0, 0, payload)
	f := d.read()
	if f.typ != typePong {
		d.t.Fatalf("%s: PING %q answered with %v, want PONG", d.label(), payload, f)
	}
	if err := checkControl(f); err != nil {
		d.t.Fatalf("%s: %v", d.label(), err)
	}
	if !bytes.Equal(f.payload, payload) {
		d.t.Fatalf("%s: PONG payload %q, want the PING's %q", d.label(), f.payload, payload)
	}
}

// echo sends best-effort DATA and requires the same payload back as
// best-effort DATA (flags 0, seq 0).
func (d *dev) echo(payload []byte) {
	d.t.Helper()
	d.send(typeData, 0, 0, payload)
	got := d.collect(1, 0)
	if got[0].flags != 0 || got[0].seq != 0 || !bytes.Equal(got[0].payload, payload) {
		d.t.Fatalf("%s: best-effort DATA %q echoed as %v, want DATA flags=0 seq=0 with the same payload", d.label(), payload, got[0])
	}
}

// collect reads until it has want DATA frames and an upstream ACK of at
// least wantAck. It checks every ACK (empty, cumulative, never beyond what
// was sent) and every DATA (reliable ones numbered in order, best-effort ones
// with seq 0), and ACKs reliable downstream DATA in batches up to ackCap.
func (d *dev) collect(want int, wantAck uint32) []frame {
	d.t.Helper()
	var got []frame
	for len(got) < want || d.lastAck < wantAck {
		f := d.read()
		switch f.typ {
		case typeAck:
			d.checkAck(f)
		case typeData:
			d.checkData(f)
			got = append(got, f)
			if f.flags&flagAckRequested != 0 && (d.r.Buffered() == 0 || len(got)%16 == 0) {
				d.flushAck()
			}
		default:
			d.t.Fatalf("%s: unexpected %v while waiting for %d DATA (have %d) and ACK %d (have %d)",
				d.label(), f, want, len(got), wantAck, d.lastAck)
		}
	}
	d.flushAck()
	return got
}

// flushAck ACKs everything received so far, up to ackCap.
func (d *dev) flushAck() {
	d.t.Helper()
	if up := min(d.down, d.ackCap); up > d.downAcked {
		d.ack(up)
	}
}

func (d *dev) checkAck(f frame) {
	d.t.Helper()
	switch {
	case len(f.payload) != 0:
		d.t.Fatalf("%s: ACK with a %d-byte payload, want empty: %v", d.label(), len(f.payload), f)
	case f.flags&^flagAckRequested != 0:
		d.t.Fatalf("%s: ACK with reserved flag bits: %v", d.label(), f)
	case f.seq > d.upSent:
		d.t.Fatalf("%s: ACK %d but the highest reliable DATA sent is %d", d.label(), f.seq, d.upSent)
	case f.seq < d.lastAck:
		d.t.Fatalf("%s: ACK %d after ACK %d; ACKs are cumulative", d.label(), f.seq, d.lastAck)
	}
	d.lastAck = f.seq
}

func (d *dev) checkData(f frame) {
	d.t.Helper()
	switch f.flags {
	case 0:
		if f.seq != 0 {
			d.t.Fatalf("%s: best-effort DATA with seq %d, want 0: %v", d.label(), f.seq, f)
		}
	case flagAckRequested:
		if f.seq != d.down+1 {
			d.t.Fatalf("%s: reliable DATA seq %d after %d, want %d (in order, +1 each): %v", d.label(), f.seq, d.down, d.down+1, f)
		}
		d.down = f.seq
	default:
		d.t.Fatalf("%s: DATA with reserved flag bits: %v", d.label(), f)
	}
}

// payloads returns the payloads of frames as strings.
func payloads(fs []frame) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = string(f.payload)
	}
	return out
}
