package testcluster

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
	"github.com/switchyard-gw/switchyard/server"
)

// TestGatewayDrainRedirectsByGossip (issue 7, gateway drain): a draining
// gateway fills GOAWAY's redirect from gossip with the other gateways
// that are alive and not draining, with no static --redirect configured.
// gw2 drains first and stays draining (its device holds on, retry_ms is a
// minute); then gw0 drains: its GOAWAY offers gw1 only, and a Go client on
// gw0 follows it and resumes its session on gw1 with the counter's state.
func TestGatewayDrainRedirectsByGossip(t *testing.T) {
	c := New(t, Options{Gateways: 3, Shards: 1, App: "counter", GatewayConfig: func(i int, cfg *server.Config) {
		if i == 2 {
			cfg.GoAwayRetry = time.Minute
		}
	}})
	c.Converge()
	ctx, cancel := context.WithTimeout(context.Background(), 2*poll.Patience)
	defer cancel()
	addrs := c.Addrs()
	for i := range addrs {
		waitGateways(ctx, t, c.Gateway(i).AdminAddr(), len(addrs), 0)
	}

	held := rawHello(t, addrs[2], "held")
	closed2 := make(chan error, 1)
	go func() { closed2 <- c.Gateway(2).Close(ctx) }()
	if got := goAwayRedirect(t, held); !sameSet(got, addrs[:2]) {
		t.Errorf("gw2's GOAWAY redirects to %v, want gw0 and gw1 %v", got, addrs[:2])
	}
	waitGateways(ctx, t, c.Gateway(0).AdminAddr(), 2, 1)

	raw := rawHello(t, addrs[0], "raw")
	dev := Dial(ctx, t, client.Config{Addr: addrs[0], ID: "mover"})
	_, before := exchangeCount(ctx, t, dev)
	closed0 := make(chan error, 1)
	go func() {
		// GOAWAYs are spread over the first half of the drain window: a
		// short window, so that the client's comes soon.
		dctx, dcancel := context.WithTimeout(ctx, 4*time.Second)
		defer dcancel()
		closed0 <- c.Gateway(0).Close(dctx)
	}()
	if got := goAwayRedirect(t, raw); !slices.Equal(got, addrs[1:2]) {
		t.Errorf("gw0's GOAWAY redirects to %v, want only gw1 %s (gw2 drains)", got, addrs[1])
	}
	raw.nc.Close()
	poll.Until(t, poll.Patience, func() error {
		if dev.Stats().Reconnects == 0 {
			return fmt.Errorf("the device has not left the draining gateway")
		}
		return nil
	})
	if err := <-closed0; err != nil {
		t.Logf("gw0's drain: %v (a loaded box: what matters is where the device went)", err)
	}
	shard, after := exchangeCount(ctx, t, dev)
	if after != before+1 {
		t.Errorf("counter went from %d to %d across the gateway drain (shard %s)", before, after, shard)
	}
	held.nc.Close()
	if err := <-closed2; err != nil {
		t.Errorf("gw2's drain: %v", err)
	}
}

// waitGateways waits until the gateway with admin address admin lists
// the given numbers of alive gateways that are active and draining.
func waitGateways(ctx context.Context, t *testing.T, admin string, active, draining int) {
	t.Helper()
	poll.Until(t, poll.Patience, func() error {
		members, err := adminMembers(ctx, admin)
		if err != nil {
			return err
		}
		count := map[string]int{}
		for _, m := range members {
			if m.Role == "gateway" && m.Alive {
				count[m.State]++
			}
		}
		if count["active"] != active || count["draining"] != draining {
			return fmt.Errorf("%s sees gateways %v, want %d active and %d draining", admin, count, active, draining)
		}
		return nil
	})
}

// goAwayRedirect reads frames until GOAWAY and returns its redirect list.
func goAwayRedirect(t *testing.T, d *rawDevice) []string {
	t.Helper()
	for {
		f, err := d.read(poll.Patience)
		if err != nil {
			t.Fatalf("waiting for GOAWAY: %v", err)
		}
		if f.Type != protocol.TypeGoAway {
			continue
		}
		var g protocol.GoAway
		if err := protocol.Unmarshal(f.Payload, &g); err != nil {
			t.Fatalf("GOAWAY payload: %v", err)
		}
		return g.Redirect
	}
}

// exchangeCount sends a tick to the counter app and returns the shard and
// the count it answered.
func exchangeCount(ctx context.Context, t *testing.T, d *client.Client) (string, uint64) {
	t.Helper()
	reply, err := Exchange(ctx, d, "tick")
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	shard, n, err := CounterReply(reply)
	if err != nil {
		t.Fatalf("counter reply %q: %v", reply, err)
	}
	return shard, n
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
