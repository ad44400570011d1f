package server

import (
	"crypto/rand"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
)

var fakeShardKey = []byte("server-test-link-key-0123456789ab")

// fakeShard is a backend shard's link side, written from the protocol
// alone (server tests do not import backend): it authenticates the
// gateway's links and hands every session envelope to the test. With
// silent it authenticates and then never writes again (it does not answer
// Pings), like a stopped process whose kernel still holds the socket.
// With echo (startEchoShard) it answers every Up like the echo app: a
// Down with the same payload, and for a reliable Up an UpAck and a
// reliable Down, one write per read of the link and without allocating,
// so that the gateway's remote path can be measured (remotepath_test.go).
type fakeShard struct {
	t      testing.TB
	name   string
	ln     net.Listener
	silent bool
	echo   bool
	envs   chan fakeEnv // session envelopes (not Up), buffered

	pings atomic.Int64 // Pings received from the gateway

	mu    sync.Mutex
	links []*fakeLink
	wg    sync.WaitGroup
}

// fakeEnv is one envelope from the gateway and the link it came on.
type fakeEnv struct {
	l *fakeLink
	e protocol.Envelope // Payload and Ext are copies
}

type fakeLink struct {
	nc  net.Conn
	wmu sync.Mutex
	out []byte // echo: the envelopes of one read, under wmu
	// down numbers reliable echoes per session (echo; serve only).
	down map[protocol.SessionID]uint32
}

// startFakeShard listens on a free loopback port until the test ends.
func startFakeShard(t testing.TB, name string, silent bool) *fakeShard {
	return newFakeShard(t, name, silent, false)
}

// startEchoShard starts a fake shard that echoes Up envelopes.
func startEchoShard(t testing.TB, name string) *fakeShard {
	return newFakeShard(t, name, false, true)
}

func newFakeShard(t testing.TB, name string, silent, echo bool) *fakeShard {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeShard{t: t, name: name, ln: ln, silent: silent, echo: echo, envs: make(chan fakeEnv, 4096)}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func (s *fakeShard) addr() string { return s.ln.Addr().String() }

// dir places every device on this shard.
func (s *fakeShard) dir() Directory { return staticDir{s.name, s.addr()} }

type staticDir struct{ shard, addr string }

func (d staticDir) Owner(string, map[string]string) (Placement, error) {
	return Placement{Shard: d.shard, Addr: d.addr}, nil
}

func (s *fakeShard) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		l := &fakeLink{nc: nc}
		s.mu.Lock()
		s.links = append(s.links, l)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(l)
		}()
	}
}

// serve authenticates l, then reads it until it closes.
func (s *fakeShard) serve(l *fakeLink) {
	defer l.nc.Close()
	rd := protocol.NewLinkReader(l.nc)
	e, err := rd.NextEnvelope()
	if err != nil || e.Kind != protocol.LinkHello {
		return
	}
	x, _ := protocol.DecodeLinkExt(e.Ext)
	bN := make([]byte, protocol.LinkNonceSize)
	_, _ = rand.Read(bN)
	ch, _ := protocol.EncodeLinkExt(&protocol.LinkExt{Shard: s.name, Nonce: bN,
		MAC: protocol.LinkMAC(fakeShardKey, protocol.LinkMACBackend, x.Nonce, s.name)})
	l.send(&protocol.Envelope{Kind: protocol.LinkChallenge, Ext: ch})
	if e, err = rd.NextEnvelope(); err != nil || e.Kind != protocol.LinkAuth {
		return
	}
	for {
		e, err := rd.NextEnvelope()
		if err != nil {
			return
		}
		switch e.Kind {
		case protocol.LinkPing:
			s.pings.Add(1)
			if !s.silent {
				l.send(&protocol.Envelope{Kind: protocol.LinkPong})
			}
			continue
		case protocol.LinkUp:
			if s.echo {
				l.echo(&e, !rd.Buffered())
			}
			continue
		case protocol.LinkPong:
			continue
		case protocol.LinkDownAck:
			if s.echo {
				continue
			}
		}
		e.Payload, e.Ext = append([]byte(nil), e.Payload...), append([]byte(nil), e.Ext...)
		select {
		case s.envs <- fakeEnv{l: l, e: e}:
		default:
			s.t.Errorf("fake shard: envelope queue full")
			return
		}
	}
}

// send writes one envelope (nothing on a silent shard after the
// authentication: the test asked for silence).
func (l *fakeLink) send(e *protocol.Envelope) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	_, _ = l.nc.Write(protocol.AppendLinkFrame(nil, e))
}

// echo queues the answer to Up e, and writes what is queued at the end
// of a read (last).
func (l *fakeLink) echo(e *protocol.Envelope, last bool) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	d := protocol.Envelope{Kind: protocol.LinkDown, Session: e.Session, Epoch: e.Epoch, Payload: e.Payload}
	if e.Flags&protocol.FlagAckRequested != 0 {
		l.out = protocol.AppendLinkFrame(l.out, &protocol.Envelope{Kind: protocol.LinkUpAck,
			Session: e.Session, Epoch: e.Epoch, Seq: e.Seq})
		if l.down == nil {
			l.down = map[protocol.SessionID]uint32{}
		}
		l.down[e.Session]++
		d.Seq, d.Flags = l.down[e.Session], protocol.FlagAckRequested
	}
	l.out = protocol.AppendLinkFrame(l.out, &d)
	if last {
		_, _ = l.nc.Write(l.out)
		l.out = l.out[:0]
	}
}

// opened answers an Open.
func (l *fakeLink) opened(sid protocol.SessionID) {
	ext, _ := protocol.EncodeLinkExt(&protocol.LinkExt{Reason: "new"})
	l.send(&protocol.Envelope{Kind: protocol.LinkOpened, Session: sid, Epoch: 1, Ext: ext})
}

// linkCount is how many links the gateway opened to the shard so far.
func (s *fakeShard) linkCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.links)
}

func (s *fakeShard) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, l := range s.links {
		l.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// next returns the next session envelope of kind k (others are skipped),
// failing the test after 20 s.
func (s *fakeShard) next(t testing.TB, k protocol.LinkKind) fakeEnv {
	t.Helper()
	deadline := time.After(poll.Patience)
	for {
		select {
		case env := <-s.envs:
			if env.e.Kind == k {
				return env
			}
		case <-deadline:
			t.Fatalf("fake shard: no %d envelope in 20 s", k)
		}
	}
}

// openOn connects device id to g, whose directory places it on s, and
// has s answer the Open: the device is past WELCOME when it returns,
// with the Open envelope s received.
func openOn(t *testing.T, g *Gateway, s *fakeShard, id string) (*dev, fakeEnv) {
	t.Helper()
	d := dial(t, g)
	hello, _ := protocol.EncodeHello(&protocol.Hello{V: 1, ID: id})
	d.send(protocol.TypeHello, 0, 0, hello)
	open := s.next(t, protocol.LinkOpen)
	open.l.opened(open.e.Session)
	if f := d.read(); f.Type != protocol.TypeWelcome {
		t.Fatalf("want WELCOME, got %v %s", f.Type, errText(f))
	}
	return d, open
}
