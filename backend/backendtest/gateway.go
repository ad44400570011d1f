// Package backendtest is a scripted fake gateway for tests of backend
// shards, in the manner of net/http/httptest: it dials a shard's link,
// runs the gateway side of the authentication (docs/links.md) and lets a
// test exchange envelopes one by one. It is written from the contract,
// not from the backend package, so that tests check the wire behaviour.
package backendtest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// ReadTimeout bounds every read, so that a broken test fails instead of
// hanging.
const ReadTimeout = 5 * time.Second

// Gateway is one fake gateway link to a backend shard.
type Gateway struct {
	tb    testing.TB
	Node  string // the gateway's name, sent in Hello
	Shard string // the shard's name, from Challenge
	conn  net.Conn

	rbuf []byte
	wmu  sync.Mutex

	// Checkpoint envelopes are set aside like Pings (a test reads them
	// with Checkpoints) unless SeeCheckpoints is set before they arrive.
	SeeCheckpoints bool
	cmu            sync.Mutex
	checkpoints    []protocol.Envelope
}

// Checkpoints returns the Checkpoint envelopes set aside so far, oldest
// first (Payload and Ext are copies).
func (g *Gateway) Checkpoints() []protocol.Envelope {
	g.cmu.Lock()
	defer g.cmu.Unlock()
	return append([]protocol.Envelope(nil), g.checkpoints...)
}

// Ext is an envelope's ext with the keys the SDK adds to State and to a
// migrated Open.
type Ext struct {
	protocol.LinkExt
	Outbox []Frame  `msgpack:"outbox,omitempty"`
	Topics []string `msgpack:"topics,omitempty"`
}

// Frame is one outbox entry: [seq, payload].
type Frame struct {
	_msgpack struct{} `msgpack:",as_array"` //nolint:unused
	Seq      uint32
	Payload  []byte
}

// Dial connects to addr as gateway node and authenticates with key. The
// link closes at the end of the test.
func Dial(tb testing.TB, addr string, key []byte, node string) *Gateway {
	tb.Helper()
	g, err := DialErr(tb, addr, key, node)
	if err != nil {
		tb.Fatalf("backendtest: %v", err)
	}
	return g
}

// DialErr is Dial returning the authentication error instead of failing
// the test; the connection is closed on error.
func DialErr(tb testing.TB, addr string, key []byte, node string) (*Gateway, error) {
	conn, err := net.DialTimeout("tcp", addr, ReadTimeout)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	g := &Gateway{tb: tb, Node: node, conn: conn}
	tb.Cleanup(g.Close)
	if err := g.handshake(key); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// DialRaw connects to addr without authenticating, for tests of the
// handshake itself.
func DialRaw(tb testing.TB, addr, node string) *Gateway {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", addr, ReadTimeout)
	if err != nil {
		tb.Fatalf("backendtest: dial %s: %v", addr, err)
	}
	g := &Gateway{tb: tb, Node: node, conn: conn}
	tb.Cleanup(g.Close)
	return g
}

// EncodeExt encodes ext fields for Send.
func EncodeExt(x protocol.LinkExt) []byte { return encode(&Ext{LinkExt: x}) }

// MAC is HMAC-SHA256(key, label | nonce | name), the MAC of both steps.
func MAC(key []byte, label string, nonce []byte, name string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	m.Write(nonce)
	m.Write([]byte(name))
	return m.Sum(nil)
}

// ErrBadChallenge: the shard's MAC did not verify under the gateway's key.
var ErrBadChallenge = errors.New("backendtest: bad challenge mac")

func (g *Gateway) handshake(key []byte) error {
	gN := make([]byte, 16)
	rand.Read(gN)
	g.Send(protocol.Envelope{Kind: protocol.LinkHello, Ext: encode(&Ext{LinkExt: protocol.LinkExt{Node: g.Node, Nonce: gN}})})
	ch, err := g.NextErr()
	if err != nil {
		return fmt.Errorf("challenge: %w", err)
	}
	x := DecodeExt(g.tb, ch.Ext)
	if ch.Kind != protocol.LinkChallenge {
		return fmt.Errorf("got kind %d, want challenge", ch.Kind)
	}
	g.Shard = x.Shard
	macOK := hmac.Equal(x.MAC, MAC(key, "switchyard-link-be", gN, x.Shard))
	// Answer even on a bad challenge, so that tests can see the shard
	// refuse the wrong key on its side too.
	g.Send(protocol.Envelope{Kind: protocol.LinkAuth, Ext: encode(&Ext{LinkExt: protocol.LinkExt{MAC: MAC(key, "switchyard-link-gw", x.Nonce, g.Node)}})})
	if !macOK {
		return ErrBadChallenge
	}
	return nil
}

// Close closes the link.
func (g *Gateway) Close() { g.conn.Close() }

// Send writes one envelope.
func (g *Gateway) Send(e protocol.Envelope) {
	g.tb.Helper()
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if _, err := g.conn.Write(protocol.AppendLinkFrame(nil, &e)); err != nil {
		g.tb.Errorf("backendtest: write: %v", err)
	}
}

// SendRaw writes bytes as they are, for tests of bad input.
func (g *Gateway) SendRaw(b []byte) {
	g.tb.Helper()
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if _, err := g.conn.Write(b); err != nil {
		g.tb.Errorf("backendtest: write: %v", err)
	}
}

// OpenOpts are the optional fields of Open.
type OpenOpts struct {
	Reason  string // "new" (default), "resumed", "migrated"
	DownSeq uint32 // HELLO last (or, migrated, the State's down_seq)
	LastUp  uint32 // migrated
	State   []byte // migrated
	Outbox  []Frame
	Topics  []string
	Tags    map[string]string
	Replay  uint32 // migrated after a crash: the old shard had accepted through this seq
}

// Open sends Open for session sid of device with a proposed epoch.
func (g *Gateway) Open(sid protocol.SessionID, device string, epoch uint64, o OpenOpts) {
	g.tb.Helper()
	if o.Reason == "" {
		o.Reason = "new"
	}
	x := Ext{LinkExt: protocol.LinkExt{Device: device, Node: g.Node, Reason: o.Reason, DownSeq: o.DownSeq,
		LastUp: o.LastUp, State: o.State, Tags: o.Tags, Replay: o.Replay}, Outbox: o.Outbox, Topics: o.Topics}
	g.Send(protocol.Envelope{Kind: protocol.LinkOpen, Session: sid, Epoch: epoch, Ext: encode(&x)})
}

// Up sends upstream DATA.
func (g *Gateway) Up(sid protocol.SessionID, epoch uint64, seq uint32, reliable bool, payload string) {
	g.tb.Helper()
	var fl protocol.Flags
	if reliable {
		fl = protocol.FlagAckRequested
	}
	g.Send(protocol.Envelope{Kind: protocol.LinkUp, Session: sid, Epoch: epoch, Seq: seq, Flags: fl, Payload: []byte(payload)})
}

// Control sends a session envelope of kind k (DownAck, Close, Snapshot)
// with seq and an optional reason.
func (g *Gateway) Control(k protocol.LinkKind, sid protocol.SessionID, epoch uint64, seq uint32, reason string) {
	g.tb.Helper()
	var ext []byte
	if reason != "" {
		ext = encode(&Ext{LinkExt: protocol.LinkExt{Reason: reason}})
	}
	g.Send(protocol.Envelope{Kind: k, Session: sid, Epoch: epoch, Seq: seq, Ext: ext})
}

// Next returns the next envelope that is not a Ping (Pings are answered
// with Pong) nor a Checkpoint set aside; Payload and Ext are copies.
func (g *Gateway) Next() protocol.Envelope {
	g.tb.Helper()
	e, err := g.NextErr()
	if err != nil {
		g.tb.Fatalf("backendtest: %s: read: %v", g.Node, err)
	}
	return e
}

// NextErr is Next returning the error.
func (g *Gateway) NextErr() (protocol.Envelope, error) {
	return g.nextTimeout(ReadTimeout)
}

func (g *Gateway) nextTimeout(d time.Duration) (protocol.Envelope, error) {
	g.conn.SetReadDeadline(time.Now().Add(d))
	for {
		e, n, err := protocol.DecodeLinkFrame(g.rbuf)
		if err == nil {
			e.Payload = append([]byte(nil), e.Payload...)
			e.Ext = append([]byte(nil), e.Ext...)
			g.rbuf = append(g.rbuf[:0], g.rbuf[n:]...)
			if e.Kind == protocol.LinkPing {
				g.Send(protocol.Envelope{Kind: protocol.LinkPong})
				continue
			}
			if e.Kind == protocol.LinkCheckpoint && !g.SeeCheckpoints {
				g.cmu.Lock()
				g.checkpoints = append(g.checkpoints, e)
				g.cmu.Unlock()
				continue
			}
			return e, nil
		}
		if !errors.Is(err, protocol.ErrIncomplete) {
			return protocol.Envelope{}, err
		}
		var b [32 << 10]byte
		k, err := g.conn.Read(b[:])
		g.rbuf = append(g.rbuf, b[:k]...)
		if k == 0 && err != nil {
			return protocol.Envelope{}, err
		}
	}
}

// Expect returns the next envelope and fails the test unless it is of
// kind k.
func (g *Gateway) Expect(k protocol.LinkKind) protocol.Envelope {
	g.tb.Helper()
	e := g.Next()
	if e.Kind != k {
		g.tb.Fatalf("backendtest: %s: got kind %d (seq %d, ext %s), want %d", g.Node, e.Kind, e.Seq, DecodeExt(g.tb, e.Ext).Reason, k)
	}
	return e
}

// TryNext returns the next envelope that arrives within d (Pings
// answered and skipped); false on timeout. Other errors fail the test.
func (g *Gateway) TryNext(d time.Duration) (protocol.Envelope, bool) {
	g.tb.Helper()
	e, err := g.nextTimeout(d)
	if err == nil {
		return e, true
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		g.tb.Fatalf("backendtest: %s: %v", g.Node, err)
	}
	return protocol.Envelope{}, false
}

// Quiet fails the test if an envelope other than Ping arrives within d.
func (g *Gateway) Quiet(d time.Duration) {
	g.tb.Helper()
	e, err := g.nextTimeout(d)
	if err == nil {
		g.tb.Fatalf("backendtest: %s: unexpected kind %d seq %d payload %q", g.Node, e.Kind, e.Seq, e.Payload)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		g.tb.Fatalf("backendtest: %s: %v", g.Node, err)
	}
}

// Closed waits until the shard closes the link (EOF or reset).
func (g *Gateway) Closed() bool {
	g.tb.Helper()
	for {
		_, err := g.nextTimeout(ReadTimeout)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false
		}
		return true // EOF or reset
	}
}

// DecodeExt decodes an envelope's ext (SDK keys included).
func DecodeExt(tb testing.TB, p []byte) Ext {
	tb.Helper()
	var x Ext
	if len(p) == 0 {
		return x
	}
	if err := protocol.Unmarshal(p, &x); err != nil {
		tb.Fatalf("backendtest: ext: %v", err)
	}
	return x
}

func encode(x *Ext) []byte {
	p, err := protocol.Marshal(x)
	if err != nil {
		panic(err)
	}
	return p
}

// SID returns a session id made from n.
func SID(n int) protocol.SessionID {
	var s protocol.SessionID
	s[0], s[1], s[15] = byte(n>>8), byte(n), 0x5a
	return s
}
