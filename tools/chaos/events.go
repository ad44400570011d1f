package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"syscall"
	"time"
)

// Event kinds.
const (
	drainShard   = "drain-shard"   // SIGTERM a shard (it moves its sessions away and exits), then restart it
	killShard    = "kill-shard"    // SIGKILL a shard, then restart it
	addShard     = "add-shard"     // start one more shard (the sessions it now owns move to it)
	drainGateway = "drain-gateway" // SIGTERM a gateway (GOAWAY: devices resume elsewhere), then restart it
	killGateway  = "kill-gateway"  // SIGKILL a gateway (devices resume elsewhere), then restart it
	// shardSilent is not chosen: a gateway took a live shard out of its
	// ring (links timed out on a starved box); silent.go finds these.
	shardSilent = "shard-silent"
	// linkLost is not chosen either: one link of a gateway to a live
	// shard failed (silent.go).
	linkLost = "link-lost"
)

// eventKinds is every kind, in the order summaries list them.
var eventKinds = []string{drainShard, killShard, addShard, drainGateway, killGateway}

// event is one event of the run, as it happened.
type event struct {
	N      int       `json:"n"`
	Kind   string    `json:"kind"`
	Target string    `json:"target"`          // the member it hit (a new shard's name for add-shard)
	Addr   string    `json:"addr,omitempty"`  // a gateway's device address: where its disconnects are explained
	Note   string    `json:"note,omitempty"`  // retired (a drained shard above --shards is not restarted)
	Error  string    `json:"error,omitempty"` // the event could not be done or did not settle
	Start  time.Time `json:"start"`           // the signal (or the new shard's start)
	Back   time.Time `json:"back,omitempty"`  // the process was up again
	End    time.Time `json:"end"`             // settled: converged, every session up, for settleQuiet
}

// settleQuiet is how long the converged state must hold before an event
// counts as settled.
const settleQuiet = time.Second

// eligible returns the kinds of enabled that may run now: at least 2
// gateways and 2 shards stay up while one is down, and at most
// --max-shards run.
func (cl *cluster) eligible(enabled []string) []string {
	gws, shards := len(cl.live(true)), len(cl.live(false))
	var out []string
	for _, k := range enabled {
		switch k {
		case drainShard, killShard:
			if shards < 3 {
				continue
			}
		case addShard:
			if shards >= cl.cfg.MaxShards {
				continue
			}
		case drainGateway, killGateway:
			if gws < 3 {
				continue
			}
		}
		out = append(out, k)
	}
	return out
}

// runEvent does one event of kind and waits until the cluster settled.
func (cl *cluster) runEvent(ctx context.Context, rng *rand.Rand, ld *load, n int, kind string) *event {
	ev := &event{N: n, Kind: kind}
	if err := cl.act(ctx, rng, ev); err != nil {
		ev.Error = err.Error()
		ev.End = time.Now()
		return ev
	}
	ev.Back = time.Now()
	if err := cl.settle(ctx, ld, ev.Back); err != nil {
		ev.Error = "not settled: " + err.Error()
	}
	ev.End = time.Now()
	return ev
}

// act does the event's signal, waits for the exit, and restarts after a
// random down time.
func (cl *cluster) act(ctx context.Context, rng *rand.Rand, ev *event) error {
	if ev.Kind == addShard {
		ev.Start = time.Now()
		m, err := cl.addShard(ctx)
		if m != nil {
			ev.Target = m.name
		}
		return err
	}
	gw := ev.Kind == drainGateway || ev.Kind == killGateway
	pool := cl.live(gw)
	m := pool[rng.IntN(len(pool))]
	ev.Target = m.name
	if gw {
		ev.Addr = m.addr
	}
	sig := syscall.SIGTERM
	if ev.Kind == killShard || ev.Kind == killGateway {
		sig = syscall.SIGKILL
	}
	ev.Start = time.Now()
	m.p.signal(sig)
	select {
	case <-m.p.done:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(cl.cfg.Settle):
		m.p.kill()
		return fmt.Errorf("%s did not exit within %v of SIGTERM (killed)", m.name, cl.cfg.Settle)
	}
	if ev.Kind == drainShard && len(cl.live(false)) >= cl.cfg.Shards {
		m.retired = true
		ev.Note = "retired"
		return nil
	}
	down := time.Duration(rng.Int64N(int64(cl.cfg.DownMax) + 1))
	select {
	case <-time.After(down):
	case <-ctx.Done():
		return ctx.Err()
	}
	return cl.run(ctx, m)
}

// settle waits until the cluster converged (every live gateway ready,
// with exactly the live shards on its ring, moving nothing) and loadgen
// has every session up, both for settleQuiet, within --settle.
func (cl *cluster) settle(ctx context.Context, ld *load, since time.Time) error {
	var okSince time.Time
	return pollCtx(ctx, cl.cfg.Settle, func() error {
		err := cl.divergence(ctx)
		if err == nil {
			err = ld.allUp(since.Add(settleQuiet))
		}
		if err != nil {
			okSince = time.Time{}
			return err
		}
		if okSince.IsZero() {
			okSince = time.Now()
		}
		if time.Since(okSince) < settleQuiet {
			return fmt.Errorf("converged for %v only", time.Since(okSince).Round(time.Millisecond))
		}
		return nil
	})
}

// countKinds is how many events of each kind ran, in eventKinds order
// ("drain-shard 8, kill-gateway 7").
func countKinds(evs []*event) (map[string]int, string) {
	m := map[string]int{}
	for _, e := range evs {
		m[e.Kind]++
	}
	s := ""
	for _, k := range eventKinds {
		if m[k] > 0 {
			if s != "" {
				s += ", "
			}
			s += fmt.Sprintf("%s %d", k, m[k])
		}
	}
	return m, s
}

// parseEvents checks a --events list.
func parseEvents(list []string) error {
	for _, k := range list {
		if !slices.Contains(eventKinds, k) {
			return fmt.Errorf("--events: unknown kind %q (%v)", k, eventKinds)
		}
	}
	if len(list) == 0 {
		return fmt.Errorf("--events: none")
	}
	return nil
}
