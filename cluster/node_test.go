package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func TestConverge(t *testing.T) {
	for _, size := range []int{3, 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			start := time.Now()
			nodes := startCluster(t, size, nil)
			t.Logf("%d nodes converged in %v", size, time.Since(start))
			for _, n := range nodes {
				for _, m := range n.Members() {
					want := "shard-" + m.Name
					if m.Meta.Role != RoleBackend || m.Meta.Shard != want || m.Meta.State != StateActive {
						t.Fatalf("%s sees %s with meta %+v", n.Name(), m.Name, m.Meta)
					}
				}
			}
		})
	}
}

func TestPortZeroAddr(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	addr := nodes[0].Addr()
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addr() = %q, want 127.0.0.1 with the real port", addr)
	}
	if m, ok := nodes[1].Member(nodes[0].Name()); !ok || m.Addr != addr {
		t.Fatalf("peer sees %+v, want Addr %s", m, addr)
	}
	if self := nodes[0].Self(); self.Addr != addr || !self.Alive {
		t.Fatalf("Self() = %+v", self)
	}
}

func TestAdvertise(t *testing.T) {
	n := newNode(t, "adv", func(c *Config) { c.Advertise = "127.0.0.2" })
	startNode(t, n)
	host, port, _ := net.SplitHostPort(n.Addr())
	if host != "127.0.0.2" || port == "0" {
		t.Fatalf("Addr() = %s, want 127.0.0.2 and the bound port", n.Addr())
	}
}

func TestUpdateReachesEveryNode(t *testing.T) {
	nodes := startCluster(t, 5, nil)
	recs := make([]*recorder, len(nodes))
	for i, n := range nodes {
		recs[i] = record(t, n)
	}
	target := nodes[2]
	if err := target.SetDraining(); err != nil {
		t.Fatalf("SetDraining: %v", err)
	}
	waitFor(t, patience, func() error {
		for i, r := range recs {
			ev, ok := r.last(target.Name())
			// A Join not yet consumed when the update came stays a Join
			// (the queue coalesces): the state is what counts.
			if !ok || (ev.Kind != EventUpdate && ev.Kind != EventJoin) || ev.Member.Meta.State != StateDraining || !ev.Member.Alive {
				return fmt.Errorf("%s: last event about %s = %+v", nodes[i].Name(), target.Name(), ev)
			}
		}
		return nil
	})
	if got := target.Meta().State; got != StateDraining {
		t.Fatalf("local meta state %v", got)
	}
}

func TestGracefulLeave(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	recs := []*recorder{record(t, nodes[1]), record(t, nodes[2])}
	leaver := nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if err := leaver.Leave(ctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	waitFor(t, patience, func() error {
		for i, r := range recs {
			ev, ok := r.last(leaver.Name())
			if !ok || ev.Kind != EventLeave {
				return fmt.Errorf("observer %d: last event %+v", i, ev)
			}
		}
		return nil
	})
	for i, r := range recs {
		ev, _ := r.last(leaver.Name())
		if ev.Member.Meta.State != StateDraining || ev.Member.Alive {
			t.Errorf("observer %d: Leave carries %+v, want draining and not alive", i, ev.Member)
		}
		if m, ok := nodes[i+1].Member(leaver.Name()); !ok || m.Alive {
			t.Errorf("observer %d: Members still has %+v", i, m)
		}
	}
	if err := leaver.Leave(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("second Leave = %v, want ErrClosed", err)
	}
}

func TestKilledNodeSeenGone(t *testing.T) {
	nodes := startCluster(t, 4, nil)
	recs := []*recorder{record(t, nodes[1]), record(t, nodes[2]), record(t, nodes[3])}
	victim := nodes[0] // the seed: the others must not depend on it
	start := time.Now()
	if err := victim.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, patience, func() error {
		for i, r := range recs {
			ev, ok := r.last(victim.Name())
			if !ok || ev.Kind != EventLeave {
				return fmt.Errorf("observer %d: last event %+v", i, ev)
			}
		}
		return nil
	})
	t.Logf("failure seen by all in %v", time.Since(start))
	for i, r := range recs {
		ev, _ := r.last(victim.Name())
		if ev.Member.Meta.State != StateActive {
			t.Errorf("observer %d: a crashed node's last meta is %v, want active", i, ev.Member.Meta.State)
		}
	}
	waitConverged(t, patience, nodes[1:]...)
}

// joinFails starts a node that must not get in and checks what happens:
// Start fails with ErrJoin once its context ends, and the cluster never
// lists it.
func joinFails(t *testing.T, nodes []*Node, edit func(*Config)) error {
	t.Helper()
	intruder := newNode(t, "intruder", func(c *Config) {
		c.Seeds = []string{nodes[0].Addr(), nodes[1].Addr()}
		edit(c)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	err := intruder.Start(ctx)
	if !errors.Is(err, ErrJoin) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start = %v, want ErrJoin and DeadlineExceeded", err)
	}
	if _, err := intruder.running(); !errors.Is(err, ErrClosed) {
		t.Fatalf("after a failed Start the node should be closed, got %v", err)
	}
	for _, n := range nodes {
		if _, ok := n.Member("intruder"); ok {
			t.Fatalf("%s lists the intruder", n.Name())
		}
		if len(n.Members()) != len(nodes) {
			t.Fatalf("%s: %d members", n.Name(), len(n.Members()))
		}
	}
	return err
}

func TestWrongKeyCannotJoin(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	err := joinFails(t, nodes, func(c *Config) { c.Keys = [][]byte{testKey(2)} })
	t.Logf("wrong key: %v", err)
}

func TestNoKeyCannotJoinEncrypted(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	joinFails(t, nodes, func(c *Config) { c.Keys = nil })
}

func TestWrongLabelCannotJoin(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	err := joinFails(t, nodes, func(c *Config) { c.Label = "other-cluster" })
	t.Logf("wrong label: %v", err)
}

// TestKeyRotation walks the rotation procedure documented on Config.Keys.
// Keys[0] encrypts and every key decrypts, so a node whose primary is the
// new key can only talk to nodes that already hold it.
func TestKeyRotation(t *testing.T) {
	oldK, newK := testKey(1), testKey(2)
	nodes := startCluster(t, 2, func(c *Config) { c.Keys = [][]byte{oldK} })

	// Step 1: a node with [old, new] (new installed, old still primary)
	// talks to nodes holding only old.
	step1 := newNode(t, "step1", func(c *Config) {
		c.Keys = [][]byte{oldK, newK}
		c.Seeds = []string{nodes[0].Addr()}
	})
	startNode(t, step1)
	all := append(nodes[:2:2], step1)
	waitConverged(t, patience, all...)

	// Step 2: a node with [new, old] talks to a node with [old, new].
	step2 := newNode(t, "step2", func(c *Config) {
		c.Keys = [][]byte{newK, oldK}
		c.Seeds = []string{step1.Addr()}
	})
	startNode(t, step2)
	waitFor(t, patience, func() error {
		if !aliveNames(step1)["step2"] || !aliveNames(step2)["step1"] {
			return errors.New("step1 and step2 do not see each other")
		}
		return nil
	})

	// Skipping step 1: [new, old] cannot join a node that has only old,
	// which cannot decrypt what it sends.
	skip := newNode(t, "skip", func(c *Config) {
		c.Keys = [][]byte{newK, oldK}
		c.Seeds = []string{nodes[0].Addr()}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := skip.Start(ctx); !errors.Is(err, ErrJoin) {
		t.Fatalf("[new, old] joining [old]: Start = %v, want ErrJoin", err)
	}
}

func TestMetaTooLargeRefused(t *testing.T) {
	big := map[string]string{}
	for i := range 30 {
		big[fmt.Sprintf("label-%02d", i)] = strings.Repeat("v", 16)
	}
	_, err := New(Config{Bind: "127.0.0.1:0", Meta: Meta{Role: RoleGateway, Labels: big}})
	var se *MetaSizeError
	if !errors.As(err, &se) {
		t.Fatalf("New with %d labels = %v, want *MetaSizeError", len(big), err)
	}

	nodes := startCluster(t, 2, nil)
	before := nodes[0].Meta()
	err = nodes[0].UpdateMeta(func(m *Meta) { m.Labels = big; m.State = StateDraining })
	if !errors.As(err, &se) {
		t.Fatalf("UpdateMeta = %v, want *MetaSizeError", err)
	}
	if !nodes[0].Meta().Equal(before) {
		t.Fatal("a refused update changed the metadata")
	}
	if m, _ := nodes[1].Member(nodes[0].Name()); m.Meta.State != StateActive {
		t.Fatal("a refused update reached the peer")
	}
}

// TestSlowConsumer: nobody reads node 0's events while node 1 changes its
// metadata many times. memberlist must not block (node 0's table keeps
// up), the queue stays at one event per member, and the consumer, when it
// finally reads, ends on the newest state.
func TestSlowConsumer(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	slow, busy := nodes[0], nodes[1]
	const updates = 40
	for i := range updates {
		v := fmt.Sprint("v", i)
		if err := busy.UpdateMeta(func(m *Meta) { m.Version = v }); err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	waitFor(t, patience, func() error {
		m, _ := slow.Member(busy.Name())
		if m.Meta.Version != fmt.Sprint("v", updates-1) {
			return fmt.Errorf("slow node sees version %q", m.Meta.Version)
		}
		return nil
	})
	st := slow.Stats()
	if st.EventsPending > len(nodes) || st.EventsCoalesced == 0 {
		t.Fatalf("stats %+v: want at most %d pending and some coalesced", st, len(nodes))
	}
	var last Event
	for {
		select {
		case ev := <-slow.Events():
			if ev.Member.Name == busy.Name() {
				last = ev
			}
			continue
		case <-time.After(200 * time.Millisecond):
		}
		break
	}
	if last.Member.Meta.Version != fmt.Sprint("v", updates-1) {
		t.Fatalf("last event about the busy node: %+v", last)
	}
	if delivered := slow.Stats().EventsDelivered; delivered >= updates {
		t.Fatalf("%d events delivered for %d updates: nothing coalesced", delivered, updates)
	}
}

func TestSendTo(t *testing.T) {
	nodes := startCluster(t, 2, func(c *Config) { c.MaxMessage = 64 << 10 })
	a, b := nodes[0], nodes[1]
	payload := bytes.Repeat([]byte("push"), 10000)
	if err := a.SendTo(b.Name(), payload); err != nil {
		t.Fatalf("SendTo: %v", err)
	}
	select {
	case msg := <-b.Messages():
		if msg.From != a.Name() || !bytes.Equal(msg.Payload, payload) {
			t.Fatalf("got %q with %d bytes", msg.From, len(msg.Payload))
		}
	case <-time.After(patience):
		t.Fatal("no message")
	}
	if err := a.SendTo("nobody", []byte("x")); !errors.Is(err, ErrUnknownMember) {
		t.Errorf("to unknown: %v", err)
	}
	if err := a.SendTo(b.Name(), make([]byte, 64<<10+1)); !errors.Is(err, ErrMessageTooLarge) {
		t.Errorf("too large: %v", err)
	}
	waitFor(t, patience, func() error { // counted just after the hand-over
		if s := b.Stats(); s.MessagesReceived != 1 || s.MessagesDropped != 0 {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
}

func TestMessagesOverflowDropped(t *testing.T) {
	nodes := startCluster(t, 2, func(c *Config) { c.MessageBuffer = 2 })
	for i := range 5 {
		if err := nodes[0].SendTo(nodes[1].Name(), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, patience, func() error {
		if s := nodes[1].Stats(); s.MessagesReceived != 2 || s.MessagesDropped != 3 {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
}

func TestLifecycle(t *testing.T) {
	n := newNode(t, "life", nil)
	if n.Addr() != "" {
		t.Fatal("Addr before Start")
	}
	if err := n.SendTo("x", nil); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("SendTo before Start: %v", err)
	}
	if err := n.UpdateMeta(func(m *Meta) { m.Version = "pre" }); err != nil {
		t.Fatalf("UpdateMeta before Start: %v", err)
	}
	startNode(t, n)
	if err := n.Start(context.Background()); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start: %v", err)
	}
	if self := n.Self(); self.Meta.Version != "pre" || !self.Alive {
		t.Fatalf("Self %+v", self)
	}
	for range 2 {
		if err := n.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := <-n.Events(); ok {
		// The Join of itself may still have been pending; then the next
		// receive must see the closed channel.
		if _, ok := <-n.Events(); ok {
			t.Fatal("Events not closed")
		}
	}
	if _, ok := <-n.Messages(); ok {
		t.Fatal("Messages not closed")
	}
	if err := n.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
	if err := n.UpdateMeta(func(m *Meta) {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("UpdateMeta after Close: %v", err)
	}

	never := newNode(t, "never", nil)
	if err := never.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-never.Events(); ok {
		t.Fatal("Events of a never-started node not closed")
	}
}

// TestJoinRetry: the seed comes up after the joiner started; Start keeps
// trying with backoff and succeeds.
func TestJoinRetry(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seedAddr := ln.Addr().String()
	ln.Close()

	joiner := newNode(t, "joiner", func(c *Config) {
		c.Seeds = []string{seedAddr}
		c.JoinBackoff = 50 * time.Millisecond
		c.JoinMaxWait = 200 * time.Millisecond
	})
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- joiner.Start(ctx)
	}()
	time.Sleep(300 * time.Millisecond) // let a few attempts fail: this is the scenario, not a wait for state
	seed := newNode(t, "seed", func(c *Config) { c.Bind = seedAddr })
	startNode(t, seed)
	if err := <-done; err != nil {
		t.Fatalf("Start with a late seed: %v", err)
	}
	waitConverged(t, patience, seed, joiner)
}

func TestConfigValidate(t *testing.T) {
	gw := Meta{Role: RoleGateway}
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" = valid
	}{
		{"zero with role", Config{Meta: gw}, ""},
		{"no role", Config{}, "role"},
		{"bad bind", Config{Bind: "localhost", Meta: gw}, "bind"},
		{"public without keys", Config{Bind: "0.0.0.0:7946", Meta: gw}, "Insecure"},
		{"public insecure", Config{Bind: "0.0.0.0:7946", Insecure: true, Meta: gw}, ""},
		{"public with key", Config{Bind: "10.1.2.3:7946", Keys: [][]byte{testKey(1)}, Meta: gw}, ""},
		{"short key", Config{Keys: [][]byte{[]byte("short")}, Meta: gw}, "key 0"},
		{"long label", Config{Label: strings.Repeat("x", 256), Meta: gw}, "label"},
		{"probe timeout", Config{Meta: gw, Timing: Timing{ProbeInterval: time.Second, ProbeTimeout: 2 * time.Second}}, "probe"},
		{"advertise", Config{Meta: gw, Advertise: "not-an-ip"}, "advertise"},
		{"long name", Config{Meta: gw, Name: strings.Repeat("n", 256)}, "name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error about %q", err, tt.want)
			}
		})
	}
	n, _ := New(Config{Meta: gw})
	if n.cfg.Bind != DefaultBind || n.cfg.Label != DefaultLabel || !strings.Contains(n.Name(), "-") {
		t.Fatalf("defaults: %+v", n.cfg)
	}
}
