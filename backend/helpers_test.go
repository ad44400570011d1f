package backend_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/backend/backendtest"
	"github.com/switchyard-gw/switchyard/internal/leakcheck"
	"github.com/switchyard-gw/switchyard/protocol"
)

func TestMain(m *testing.M) { leakcheck.Main(m, nil) }

var (
	key      = []byte("0123456789abcdef-cluster-key")
	otherKey = []byte("fedcba9876543210-other-key")
)

// recorder is a Handler that records every call, checks that calls for
// one session never overlap, and can be scripted per test.
type recorder struct {
	mu     sync.Mutex
	log    []string
	busy   map[string]bool
	maxPar atomic.Int32
	par    atomic.Int32
	errs   []string

	delay   time.Duration
	block   chan struct{} // OnMessage waits on it when set
	onMsg   func(s *backend.Session, p []byte, rel bool) error
	onOpen  func(s *backend.Session, r backend.OpenReason, state []byte) error
	snapErr error
}

func (r *recorder) enter(s *backend.Session) {
	r.mu.Lock()
	if r.busy == nil {
		r.busy = make(map[string]bool)
	}
	// Calls are serial per session; two sessions of one device (a
	// takeover) may overlap.
	key := fmt.Sprint(s.Device(), "/", s.ID())
	if r.busy[key] {
		r.errs = append(r.errs, "overlapping calls for "+key)
	}
	r.busy[key] = true
	r.mu.Unlock()
	n := r.par.Add(1)
	for {
		m := r.maxPar.Load()
		if n <= m || r.maxPar.CompareAndSwap(m, n) {
			break
		}
	}
}

func (r *recorder) exit(s *backend.Session) {
	r.par.Add(-1)
	r.mu.Lock()
	r.busy[fmt.Sprint(s.Device(), "/", s.ID())] = false
	r.mu.Unlock()
}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	r.log = append(r.log, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *recorder) OnOpen(s *backend.Session, reason backend.OpenReason, state []byte) error {
	r.enter(s)
	defer r.exit(s)
	r.add("open %s %s %s", s.Device(), reason, state)
	if r.onOpen != nil {
		return r.onOpen(s, reason, state)
	}
	return nil
}

func (r *recorder) OnMessage(s *backend.Session, p []byte, rel bool) error {
	r.enter(s)
	defer r.exit(s)
	if r.block != nil {
		<-r.block
	}
	time.Sleep(r.delay)
	r.add("msg %s %s %v", s.Device(), p, rel)
	if r.onMsg != nil {
		return r.onMsg(s, p, rel)
	}
	return nil
}

func (r *recorder) OnClose(s *backend.Session, reason string) {
	r.enter(s)
	defer r.exit(s)
	r.add("close %s %s", s.Device(), reason)
}

func (r *recorder) Snapshot(s *backend.Session) ([]byte, error) {
	r.enter(s)
	defer r.exit(s)
	return []byte("snap-" + s.Device()), r.snapErr
}

// lines returns the recorded calls; has reports whether one was recorded.
func (r *recorder) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) > 0 {
		panic(r.errs[0])
	}
	return append([]string(nil), r.log...)
}

func (r *recorder) has(line string) bool {
	for _, l := range r.lines() {
		if l == line {
			return true
		}
	}
	return false
}

func (r *recorder) count(prefix string) int {
	n := 0
	for _, l := range r.lines() {
		if len(l) >= len(prefix) && l[:len(prefix)] == prefix {
			n++
		}
	}
	return n
}

// start starts a shard on a free port with h; mut adjusts the config.
// Close runs at the end of the test.
func start(t *testing.T, shard string, h backend.Handler, mut func(*backend.Config)) *backend.Server {
	t.Helper()
	// A backendtest gateway answers Pings only while the test reads it:
	// a generous LinkTimeout keeps a test that pauses from losing its link
	// (the heartbeat tests set their own).
	cfg := backend.Config{Shard: shard, Link: "127.0.0.1:0", ClusterKeys: [][]byte{key}, Handler: h, LinkTimeout: time.Minute}
	if mut != nil {
		mut(&cfg)
	}
	srv, err := backend.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return srv
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitForWithin(t, 5*time.Second, what, cond)
}

// waitForWithin polls cond until it holds or d passes.
func waitForWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// openSession opens sid for device on g and returns the Opened envelope.
func openSession(t *testing.T, g *backendtest.Gateway, sid protocol.SessionID, device string, epoch uint64, o backendtest.OpenOpts) protocol.Envelope {
	t.Helper()
	g.Open(sid, device, epoch, o)
	return g.Expect(protocol.LinkOpened)
}

// ackThrough reads until an UpAck for sid with seq ≥ want and returns it;
// other envelopes fail the test.
func ackThrough(t *testing.T, g *backendtest.Gateway, sid protocol.SessionID, want uint32) protocol.Envelope {
	t.Helper()
	for {
		e := g.Expect(protocol.LinkUpAck)
		if e.Session != sid {
			t.Fatalf("ack for another session")
		}
		if e.Seq >= want {
			return e
		}
	}
}

var errNo = errors.New("no")
