package testcluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/internal/poll"
)

// served sends one reliable message from c and returns the shard that
// served it (counter app).
func served(ctx context.Context, t *testing.T, c *client.Client) string {
	t.Helper()
	reply, err := Exchange(ctx, c, "tick")
	if err != nil {
		t.Fatal(err)
	}
	shard, _, err := CounterReply(reply)
	if err != nil {
		t.Fatal(err)
	}
	return shard
}

// TestPlacementFollowsRing: 2 gateways × 3 shards; 30 devices through
// alternating gateways are each served by the shard the ring names.
func TestPlacementFollowsRing(t *testing.T) {
	c := New(t, Options{Gateways: 2, Shards: 3, App: "counter"})
	c.Converge()
	ctx, cancel := context.WithTimeout(context.Background(), 2*poll.Patience)
	defer cancel()
	ring := c.Ring()
	seen := map[string]int{}
	addrs := c.Addrs()
	for i := range 30 {
		id := fmt.Sprintf("dev-%d", i)
		want, err := ring.Owner(id)
		if err != nil {
			t.Fatal(err)
		}
		d := Dial(ctx, t, client.Config{Addr: addrs[i%len(addrs)], ID: id})
		if got := served(ctx, t, d); got != want.Name {
			t.Errorf("%s via gateway %d: served by %s, ring says %s", id, i%len(addrs), got, want.Name)
		}
		seen[want.Name]++
		d.Close()
	}
	if len(seen) != 3 {
		t.Errorf("30 devices on %d shards: %v", len(seen), seen)
	}
}

// TestShardRestartRelinks: a device connected through gateway 0 to shard
// X; X stops and a shard of the same name comes back (at a new link
// address, or the same one). The device is served again, and a new
// device the ring places on X is served by the new X through the same
// gateway: the gateway linked to the new shard.
func TestShardRestartRelinks(t *testing.T) {
	for _, sameAddr := range []bool{false, true} {
		t.Run(fmt.Sprintf("same_addr=%v", sameAddr), func(t *testing.T) {
			c := New(t, Options{Gateways: 1, Shards: 3, App: "counter"})
			c.Converge()
			ctx, cancel := context.WithTimeout(context.Background(), 2*poll.Patience)
			defer cancel()
			gw := c.Addrs()[0]
			id := "restart-dev"
			x := c.Owner(id)
			d := Dial(ctx, t, client.Config{Addr: gw, ID: id})
			if got := served(ctx, t, d); got != x {
				t.Fatalf("served by %s, ring says %s", got, x)
			}
			i := c.ShardIndex(x)
			addr := c.Shard(i).Addr()
			c.StopShard(i)
			c.Converge()
			start := time.Now()
			if sameAddr {
				c.StartShardAt(x, addr)
			} else {
				c.StartShard(x)
			}
			c.Converge()
			t.Logf("shard %s back (link %s) and converged in %v", x, c.ShardByName(x).Addr(), time.Since(start))

			// The old device is served again: either the gateways moved its
			// session off the stopping shard (Close announces it leaving
			// before it closes its links), or the link was cut first (503)
			// and it reconnected. After the restart the ring names x again,
			// so a moved session moves back.
			sctx, scancel := context.WithTimeout(ctx, poll.Patience)
			defer scancel()
			by := served(sctx, t, d)
			t.Logf("old device served by %s after %d reconnects", by, d.Stats().Reconnects)

			// A new device placed on X is served by the new X.
			for n := 0; ; n++ {
				nid := fmt.Sprintf("restart-new-%d", n)
				if c.Owner(nid) != x {
					continue
				}
				nd := Dial(sctx, t, client.Config{Addr: gw, ID: nid})
				if got := served(sctx, t, nd); got != x {
					t.Fatalf("%s served by %s, ring says %s", nid, got, x)
				}
				break
			}
		})
	}
}

// TestDrainingShardTakesNothing: a shard announces draining while devices
// keep arriving through both gateways; from then on it opens no session
// (gateways that still place devices on it get 503 and the devices retry),
// the ring drops it on every member, later devices land on the remaining
// shards as the ring says, and after its graceful stop the devices it
// owned are served by the others.
func TestDrainingShardTakesNothing(t *testing.T) {
	c := New(t, Options{Gateways: 2, Shards: 3, App: "counter"})
	c.Converge()
	ctx, cancel := context.WithTimeout(context.Background(), 2*poll.Patience)
	defer cancel()
	const drained = 1
	srv := c.Shard(drained)
	name := srv.Shard()
	fullRing := c.Ring()
	addrs := c.Addrs()

	type arrival struct {
		id, shard string
		dialed    time.Time
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var arrivals []arrival
	stop := make(chan struct{})
	for g := range addrs {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("during-%d-%d", g, n)
				dialed := time.Now()
				d, err := DialRetry(ctx, client.Config{Addr: addrs[g], ID: id})
				if err != nil {
					t.Errorf("%s: %v", id, err)
					return
				}
				reply, err := Exchange(ctx, d, "tick")
				d.Close()
				if err != nil {
					t.Errorf("%s: %v", id, err)
					return
				}
				shard, _, _ := CounterReply(reply)
				mu.Lock()
				arrivals = append(arrivals, arrival{id, shard, dialed})
				mu.Unlock()
			}
		})
	}
	time.Sleep(50 * time.Millisecond) // the scenario: some devices before the announcement
	dctx, dcancel := context.WithTimeout(ctx, poll.Patience)
	if err := c.DrainShard(dctx, drained); err != nil {
		t.Errorf("drain: %v", err)
	}
	dcancel()
	drainedAt, opensAtDrain := time.Now(), srv.Stats().SessionsOpened
	c.Converge()
	// More devices after convergence: until each gateway served one.
	poll.Until(t, poll.Patience, func() error {
		mu.Lock()
		defer mu.Unlock()
		seen := map[string]bool{}
		for _, a := range arrivals {
			if a.dialed.After(drainedAt) {
				seen[strings.SplitN(a.id, "-", 3)[1]] = true
			}
		}
		if len(seen) < len(addrs) {
			return fmt.Errorf("devices dialed after the drain came through %d of %d gateways", len(seen), len(addrs))
		}
		return nil
	})
	close(stop)
	wg.Wait()

	late := 0
	for _, a := range arrivals {
		if a.dialed.After(drainedAt) {
			late++
			if a.shard == name {
				t.Errorf("%s dialed after the drain and served by the draining shard %s", a.id, name)
			}
		}
	}
	if late == 0 {
		t.Errorf("no device arrived after the drain (of %d)", len(arrivals))
	}
	if n := srv.RingLen(); n != 2 {
		t.Errorf("draining shard's ring: %d shards, want 2", n)
	}

	// The ring of the two others decides now.
	ring := c.Ring()
	for i := range 20 {
		id := fmt.Sprintf("after-%d", i)
		want, _ := ring.Owner(id)
		d := Dial(ctx, t, client.Config{Addr: addrs[i%2], ID: id})
		if got := served(ctx, t, d); got != want.Name {
			t.Errorf("%s: served by %s, ring says %s (draining: %s)", id, got, want.Name, name)
		}
		d.Close()
	}
	st := srv.Stats()
	if st.SessionsOpened != opensAtDrain {
		t.Errorf("the draining shard opened %d sessions after it announced draining", st.SessionsOpened-opensAtDrain)
	}
	t.Logf("%d devices during the drain (%d after it), %d opens refused by the draining shard",
		len(arrivals), late, st.SessionsRefused)

	c.StopShard(drained)
	c.Converge()
	moved := 0
	for i := 0; moved < 5; i++ {
		id := fmt.Sprintf("owned-%d", i)
		if s, _ := fullRing.Owner(id); s.Name != name {
			continue
		}
		moved++
		want, _ := ring.Owner(id)
		d := Dial(ctx, t, client.Config{Addr: addrs[i%2], ID: id})
		if got := served(ctx, t, d); got != want.Name {
			t.Errorf("%s (was %s's): served by %s, ring says %s", id, name, got, want.Name)
		}
		d.Close()
	}
}

// TestDrainMovesLiveSessions: DESIGN.md "planned shard leave": a shard
// that drains has its sessions moved to their new owner with their state
// (counter snapshot) while the device's connection stays open.
func TestDrainMovesLiveSessions(t *testing.T) {
	c := New(t, Options{Gateways: 1, Shards: 2, App: "counter"})
	c.Converge()
	ctx, cancel := context.WithTimeout(context.Background(), 2*poll.Patience)
	defer cancel()
	id := "mover"
	from := c.Owner(id)
	d := Dial(ctx, t, client.Config{Addr: c.Addrs()[0], ID: id})
	for range 3 {
		if got := served(ctx, t, d); got != from {
			t.Fatalf("served by %s, ring says %s", got, from)
		}
	}
	dctx, dcancel := context.WithTimeout(ctx, poll.Patience)
	err := c.DrainShard(dctx, c.ShardIndex(from))
	dcancel()
	if err != nil {
		t.Fatalf("drain: %v", err)
	}
	reply, err := Exchange(ctx, d, "tick")
	if err != nil {
		t.Fatal(err)
	}
	shard, count, _ := CounterReply(reply)
	if shard == from || count != 4 || d.Stats().Reconnects != 0 {
		t.Errorf("after the drain: %q, %d reconnects; want another shard, count 4, no reconnect",
			reply, d.Stats().Reconnects)
	}
}

// TestConvergenceTime: how long 1 gateway and 3 shards take from nothing
// to every ring holding the 3 shards.
// It also times a join (a fourth shard) and a graceful leave.
func TestConvergenceTime(t *testing.T) {
	start := time.Now()
	c := New(t, Options{Gateways: 1, Shards: 3})
	started := time.Since(start)
	c.Converge()
	t.Logf("1 gateway + 3 shards in-process: started in %v, converged in %v", started, time.Since(start))

	start = time.Now()
	c.StartShard("s3")
	c.Converge()
	t.Logf("a fourth shard joined and every ring holds it after %v", time.Since(start))

	start = time.Now()
	c.StopShard(0)
	stopped := time.Since(start)
	c.Converge()
	t.Logf("shard s0 stopped in %v; every ring dropped it after %v", stopped, time.Since(start))
}

// TestKillShardInProcess: after KillShard (the emulated crash) and
// StopGateway the cluster converges on what is left and a device of the
// killed shard is served by the owner the ring now names.
func TestKillShardInProcess(t *testing.T) {
	c := New(t, Options{Gateways: 2, Shards: 2, App: "counter"})
	c.Converge()
	ctx, cancel := context.WithTimeout(context.Background(), 2*poll.Patience)
	defer cancel()
	id := "orphan"
	x := c.Owner(id)
	d := Dial(ctx, t, client.Config{Addr: c.Addrs()[1], ID: id})
	if got := served(ctx, t, d); got != x {
		t.Fatalf("served by %s, ring says %s", got, x)
	}
	c.KillShard(c.ShardIndex(x))
	c.StopGateway(0)
	c.Converge()
	if got, want := served(ctx, t, d), c.Owner(id); got != want || got == x {
		t.Errorf("after the kill: served by %s, ring says %s", got, want)
	}
}
