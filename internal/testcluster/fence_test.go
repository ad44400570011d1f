package testcluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/examples/counter"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/server"
)

// Fencing and races (issue 7 point 5, docs/guarantees.md "Fencing and
// races"). A gateway with a stale view is a gateway whose Directory is
// frozen: it is not in the gossip and names the shard the test tells it,
// as a gateway whose gossip is held back would.

// frozenDir is a Directory that names one shard for every device until
// the test moves it (the stale gateway's gossip "catching up").
type frozenDir struct {
	mu          sync.Mutex
	shard, addr string
}

var _ server.Directory = (*frozenDir)(nil)

func (d *frozenDir) Owner(string, map[string]string) (server.Placement, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return server.Placement{Shard: d.shard, Addr: d.addr}, nil
}

func (d *frozenDir) set(shard *backend.Server) {
	d.mu.Lock()
	d.shard, d.addr = shard.Shard(), shard.Addr()
	d.mu.Unlock()
}

// startStaleGateway starts a gateway outside the gossip that places every
// device on the shard dir names. It shares the cluster's keys, so devices
// resume on it with tokens of the other gateways.
func startStaleGateway(t *testing.T, c *Cluster, name string, dir *frozenDir) *server.Gateway {
	t.Helper()
	g, err := server.New(server.Config{Listen: "127.0.0.1:0", AdminListen: "-", Node: name,
		ClusterKeys: [][]byte{c.keys.cluster}, LinkKeys: [][]byte{c.keys.link}, Backends: dir,
		GoAwayRetry: DefaultGoAwayRetry, MoveTimeout: poll.Patience, Logger: c.log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultConvergeWait)
	defer cancel()
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), DefaultStopTimeout)
		defer cancel()
		_ = g.Close(ctx)
	})
	if err := waitServing(g.Addr().String()); err != nil {
		t.Fatal(err)
	}
	return g
}

// movingDevice returns a device id that the ring of from alone places on
// from and the ring of from and to places on to.
func movingDevice(t *testing.T, prefix, from, to string) string {
	t.Helper()
	for i := 0; ; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		if o, _ := Ring(t, from, to).Owner(id); o.Name == to {
			return id
		}
	}
}

// stopped returns why d stopped (nil while it runs). It must only be
// called when no message is waiting for d's Recv.
func stoppedWith(d *client.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := d.Recv(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// expectCount exchanges one message and checks the counter's reply.
func expectCount(ctx context.Context, t *testing.T, d *client.Client, shard string, count uint64) {
	t.Helper()
	reply, err := Exchange(ctx, d, "tick")
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if s, n, _ := CounterReply(reply); s != shard || n != count {
		t.Fatalf("reply %q, want %q with count %d", reply, shard, count)
	}
}

// TestStaleGatewayCannotReopenOnOldOwner: a device's session moves from
// s0 to s1 when s1 joins; its gateway drains and sends it (GOAWAY) to a
// gateway whose view is stale: it still names s0. The old owner must not
// take the device again: it refuses the resume (counted), so the device
// gets 503 and retries instead of a fresh session on s0 with its counter
// gone. A new HELLO for the device at the stale gateway gets 503 too.
// Once the stale gateway's view catches up, the device resumes on s1
// with its state: nothing it sent after the move reached s0.
func TestStaleGatewayCannotReopenOnOldOwner(t *testing.T) {
	var staleAddr string
	c := New(t, Options{Shards: 1, App: "counter", GatewayConfig: func(_ int, cfg *server.Config) {
		cfg.Redirects = []string{staleAddr}
	}})
	s0 := c.Shard(0)
	dir := &frozenDir{}
	dir.set(s0)
	stale := startStaleGateway(t, c, "stale", dir)
	staleAddr = stale.Addr().String()
	c.StartGateway()
	c.Converge()
	ctx, cancel := context.WithTimeout(context.Background(), 3*moveWait)
	defer cancel()

	id := movingDevice(t, "stale", "s0", "s1")
	d := Dial(ctx, t, client.Config{Addr: c.Addrs()[0], ID: id})
	expectCount(ctx, t, d, "s0", 1)
	expectCount(ctx, t, d, "s0", 2)

	s1 := c.StartShard("s1")
	c.Converge()
	waitUntil(t, "the session moved to s1", func() bool {
		s := s1.Session(id)
		return s != nil && s.Attached() && s0.Session(id) == nil
	})
	expectCount(ctx, t, d, "s1", 3)
	delivered := s0.Stats().UpDelivered
	refused := s0.Stats().SessionsRefused

	// The device's gateway drains: GOAWAY sends the device to the stale
	// gateway, which resumes the session on s0.
	c.StopGateway(0)
	waitUntil(t, "s0 answered the stale resume", func() bool {
		return s0.Stats().SessionsRefused > refused || s0.Session(id) != nil
	})
	if s0.Session(id) != nil {
		t.Fatalf("s0, the old owner, opened the device's session again after it moved to s1")
	}
	// A second connection of the device: a clear refusal, not a session.
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	d2, err := client.Dial(dctx, client.Config{Addr: staleAddr, ID: id, DisableReconnect: true})
	dcancel()
	if err == nil {
		d2.Close()
		t.Fatalf("a new HELLO at the stale gateway was served by s0")
	}
	if !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("a new HELLO at the stale gateway: %v, want 503", err)
	}
	if st := s0.Stats(); st.RefusedMoved < 2 {
		t.Errorf("s0 counted %d refusals of a moved session, want at least 2", st.RefusedMoved)
	}

	// The stale gateway's view catches up: the device resumes on s1.
	dir.set(s1)
	expectCount(ctx, t, d, "s1", 4)
	if !d.Resumed() {
		t.Errorf("the device did not resume its session")
	}
	if st := s0.Stats(); st.UpDelivered != delivered || st.Sessions != 0 {
		t.Errorf("s0 after the move: %d messages delivered (was %d), %d sessions", st.UpDelivered, delivered, st.Sessions)
	}
	if s := s1.Session(id); s == nil || !s.Attached() || !strings.HasPrefix(s.Gateway(), "stale@") {
		t.Errorf("the session is not attached on s1 through the stale gateway")
	}
}

// gatedCounter is the counter app whose Snapshot (on the old shard) or
// migrated OnOpen (on the new shard) of one device waits until the test
// releases it, holding that device's move in flight.
type gatedCounter struct {
	counter.Handler
	g *gate
}

type gate struct {
	device   string
	snapshot bool // hold the Snapshot; otherwise the migrated OnOpen
	entered  chan struct{}
	release  chan struct{}
	once     sync.Once
	relOnce  sync.Once
}

func newGate(device string, snapshot bool) *gate {
	return &gate{device: device, snapshot: snapshot, entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gate) hold(s *backend.Session) {
	if s.Device() != g.device {
		return
	}
	g.once.Do(func() { close(g.entered) })
	select {
	case <-g.release:
	case <-time.After(poll.Patience):
	}
}

func (g *gate) open() { g.relOnce.Do(func() { close(g.release) }) }

func (h gatedCounter) Snapshot(s *backend.Session) ([]byte, error) {
	if h.g.snapshot {
		h.g.hold(s)
	}
	return h.Handler.Snapshot(s)
}

func (h gatedCounter) OnOpen(s *backend.Session, r backend.OpenReason, state []byte) error {
	if !h.g.snapshot && r == backend.OpenMigrated {
		h.g.hold(s)
	}
	return h.Handler.OnOpen(s, r, state)
}

// live reports, for two connections of one device, which one is live:
// the other must have stopped with 409.
func live(t *testing.T, a, b *client.Client) (winner *client.Client) {
	t.Helper()
	var ea, eb error
	waitUntil(t, "one of the two connections stopped", func() bool {
		ea, eb = stoppedWith(a), stoppedWith(b)
		return ea != nil || eb != nil
	})
	switch {
	case ea != nil && eb != nil:
		t.Fatalf("both connections stopped: %v; %v", ea, eb)
	case ea != nil:
		if !errors.Is(ea, client.ErrTakenOver) {
			t.Fatalf("the loser stopped with %v, want 409", ea)
		}
		return b
	default:
		if !errors.Is(eb, client.ErrTakenOver) {
			t.Fatalf("the loser stopped with %v, want 409", eb)
		}
		return a
	}
	return nil
}

// oneSession checks the shards' tables: exactly one shard holds a
// session of id, attached, through the gateway named gw.
func oneSession(t *testing.T, c *Cluster, id, gw string) {
	t.Helper()
	waitUntil(t, "exactly one shard holds "+id+", attached through "+gw, func() bool {
		n := 0
		for _, name := range append(c.Active(), c.draining()...) {
			s := c.ShardByName(name).Session(id)
			if s == nil {
				continue
			}
			n++
			if !s.Attached() || !strings.HasPrefix(s.Gateway(), gw+"@") {
				return false
			}
		}
		return n == 1
	})
}

// draining returns the names of the shards that are draining.
func (c *Cluster) draining() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range c.shards {
		if s.state == draining {
			out = append(out, s.name)
		}
	}
	return out
}

// TestConcurrentHellosOneLiveSession: for 12 devices, two HELLOs for the
// same device id arrive at two gateways at once. Each time exactly one
// connection stays live and the other gets 409, and exactly one shard
// holds the device's session, bound through the live connection's
// gateway.
func TestConcurrentHellosOneLiveSession(t *testing.T) {
	c := New(t, Options{Gateways: 2, Shards: 2})
	c.Converge()
	ctx, cancel := context.WithTimeout(context.Background(), 3*moveWait)
	defer cancel()
	addrs := c.Addrs()
	for i := range 12 {
		id := fmt.Sprintf("twin-%d", i)
		var ds [2]*client.Client
		var errs [2]error
		var wg sync.WaitGroup
		for k := range ds {
			wg.Go(func() {
				ds[k], errs[k] = DialRetry(ctx, client.Config{Addr: addrs[k], ID: id, ReconnectMin: DeviceReconnectMin,
					ReconnectMax: DeviceReconnectMax})
			})
		}
		wg.Wait()
		var win int
		switch {
		case errs[0] != nil && errs[1] != nil:
			t.Fatalf("%s: both refused: %v; %v", id, errs[0], errs[1])
		case errs[0] != nil || errs[1] != nil:
			win = 0
			if errs[0] != nil {
				win = 1
			}
			if err := errs[1-win]; !errors.Is(err, client.ErrTakenOver) {
				t.Fatalf("%s: the loser got %v, want 409", id, err)
			}
		default:
			w := live(t, ds[0], ds[1])
			if w == ds[1] {
				win = 1
			}
		}
		for _, d := range ds {
			if d != nil {
				t.Cleanup(func() { d.Close() })
			}
		}
		if reply, err := Exchange(ctx, ds[win], "ping"); err != nil || reply != "ping" {
			t.Fatalf("%s: the live connection: %q, %v", id, reply, err)
		}
		oneSession(t, c, id, fmt.Sprintf("gw%d", win))
	}
}

// TestConcurrentHelloDuringMove: a device's session is moving from s0 to
// s1 (s1 joined) when a second HELLO for the device arrives at another
// gateway. The newer HELLO wins, as in every takeover: the connection
// that was moving gets 409, exactly one session of the device is left,
// on one shard, bound through the newer connection's gateway.
//
//   - fresh: the second gateway sees s1 and opens there while the old
//     shard's Snapshot is held (the migrated Open comes after).
//   - stale: the second gateway still names s0 and opens there after s0
//     handed the state over, while the new shard's migrated OnOpen is
//     held. s0 refuses it (503); once that gateway's view catches up the
//     device takes the session over on s1.
func TestConcurrentHelloDuringMove(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stale bool
	}{{"fresh", false}, {"stale", true}} {
		t.Run(tc.name, func(t *testing.T) {
			id := movingDevice(t, "racer", "s0", "s1")
			g := newGate(id, !tc.stale)
			c := New(t, Options{Shards: 1, App: "counter",
				Handler: func() backend.Handler { return gatedCounter{g: g} },
				GatewayConfig: func(_ int, cfg *server.Config) {
					cfg.MoveTimeout = poll.Patience // the held move must not time out
				}})
			t.Cleanup(g.open) // before the cluster's cleanup, which waits for the handler
			ctx, cancel := context.WithTimeout(context.Background(), 3*moveWait)
			defer cancel()
			s0 := c.Shard(0)
			dir := &frozenDir{}
			dir.set(s0)
			second := "gw1"
			var addr2 string
			if tc.stale {
				second = "stale"
				addr2 = startStaleGateway(t, c, second, dir).Addr().String()
				c.StartGateway()
			} else {
				c.StartGateway()
				c.StartGateway()
				addr2 = c.Addrs()[1]
			}
			c.Converge()
			d1 := Dial(ctx, t, client.Config{Addr: c.Addrs()[0], ID: id})
			expectCount(ctx, t, d1, "s0", 1)

			s1 := c.StartShard("s1")
			select {
			case <-g.entered:
			case <-ctx.Done():
				t.Fatal("the move did not start")
			}
			// The move is held. The second HELLO:
			d2cfg := client.Config{Addr: addr2, ID: id, ReconnectMin: DeviceReconnectMin, ReconnectMax: DeviceReconnectMax}
			var d2 *client.Client
			if tc.stale {
				dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
				d, err := client.Dial(dctx, d2cfg)
				dcancel()
				if err == nil {
					d.Close()
					t.Fatal("s0 served a HELLO for a device whose session it handed over")
				}
				if !errors.Is(err, client.ErrUnavailable) {
					t.Fatalf("second HELLO at the stale gateway: %v, want 503", err)
				}
				g.open()
				waitUntil(t, "the move finished", func() bool {
					s := s1.Session(id)
					return s != nil && s.Attached() && s0.Session(id) == nil
				})
				expectCount(ctx, t, d1, "s1", 2)
				dir.set(s1) // the stale view catches up
				d2 = Dial(ctx, t, d2cfg)
			} else {
				c.Converge() // the second gateway places the device on s1
				d2 = Dial(ctx, t, d2cfg)
				g.open()
			}
			poll.Until(t, moveWait, func() error {
				e1, e2 := stoppedWith(d1), stoppedWith(d2)
				if !errors.Is(e1, client.ErrTakenOver) {
					return fmt.Errorf("the moving connection: %v, the newer one: %v; want 409 for the moving one", e1, e2)
				}
				return nil
			})
			if err := stoppedWith(d2); err != nil {
				t.Fatalf("the newer connection stopped: %v", err)
			}
			reply, err := Exchange(ctx, d2, "tick")
			if err != nil {
				t.Fatalf("the newer connection: %v", err)
			}
			if s, _, _ := CounterReply(reply); s != "s1" {
				t.Errorf("the newer connection is served by %q, want s1", reply)
			}
			oneSession(t, c, id, second)
			if n := s0.Stats().Sessions; n != 0 {
				t.Errorf("s0 still holds %d sessions", n)
			}
		})
	}
}
