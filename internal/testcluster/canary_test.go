package testcluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/router"
	"github.com/switchyard-gw/switchyard/server"
)

// The canary tests run 3 counter shards, s2 labelled version=2.1, behind 2
// gateways, and a rule for devices tagged model=x1.
var canaryLabels = map[string]string{"version": "2.1"}

func canaryRule(pct float64) []router.Rule {
	return []router.Rule{{Name: "v21", Match: map[string]string{"model": "x1"}, Percent: pct, Labels: canaryLabels}}
}

// canaryCluster starts the cluster; rules are the gateways' Config.Canary.
func canaryCluster(t *testing.T, rules []router.Rule) *Cluster {
	c := New(t, Options{Gateways: 2, Shards: 3, App: "counter",
		ShardConfig: func(name string, cfg *backend.Config) {
			if name == "s2" {
				cfg.Labels = canaryLabels
			}
		},
		GatewayConfig: func(_ int, cfg *server.Config) { cfg.Canary = rules },
	})
	c.Converge()
	return c
}

// canaryRun starts the cluster with rules and returns it with the test's
// deadline.
func canaryRun(t *testing.T, rules []router.Rule) (*Cluster, context.Context) {
	c := canaryCluster(t, rules)
	ctx, cancel := context.WithTimeout(context.Background(), 2*moveWait)
	t.Cleanup(cancel)
	return c, ctx
}

// canaryPlace is where the gateways must place id under rules: the
// router's rules over the labelled ring of the running shards.
func canaryPlace(t *testing.T, c *Cluster, rules []router.Rule, id string, tags map[string]string) string {
	t.Helper()
	var shards []router.Shard
	for _, n := range c.Active() {
		s := router.Shard{Name: n}
		if n == "s2" {
			s.Labels = canaryLabels
		}
		shards = append(shards, s)
	}
	ring, err := router.NewRing(router.Config{}, shards)
	if err != nil {
		t.Fatal(err)
	}
	p, err := router.NewRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.Place(id, tags, ring)
	if err != nil {
		t.Fatal(err)
	}
	return s.Name
}

// canaryDevice is one device of the canary tests.
type canaryDevice struct {
	id    string
	tags  map[string]string
	d     *client.Client
	count uint64 // the counter's last reply
}

// canaryDevices picks device ids that cover every case of the roll-out
// under rule v21: in the 1 % cohort, in the 10 % one only, tagged x1 but
// in neither, tagged x2 although their draw is in (Match must exclude
// them), and unselected devices whose ring owner is the canary shard
// (which the default placement must move off it).
func canaryDevices(t *testing.T, c *Cluster) []*canaryDevice {
	want := map[string]int{"1%": 2, "10%": 3, "x1 out": 4, "x2 drawn": 2, "owned by s2": 2, "other": 3}
	var devs []*canaryDevice
	x1 := map[string]string{"model": "x1"}
	for i := 0; len(devs) < 16 && i < 100000; i++ {
		id := fmt.Sprintf("canary-%d", i)
		tags := x1
		if i%2 == 1 {
			tags = map[string]string{"model": "x2"}
		}
		in1 := canaryPlace(t, c, canaryRule(1), id, x1) == "s2"
		in10 := canaryPlace(t, c, canaryRule(10), id, x1) == "s2"
		kind := "other"
		switch {
		case tags["model"] == "x2" && in10:
			kind = "x2 drawn"
		case tags["model"] == "x2":
			if c.Owner(id) == "s2" {
				kind = "owned by s2"
			}
		case in1:
			kind = "1%"
		case in10:
			kind = "10%"
		default:
			kind = "x1 out"
		}
		if want[kind] > 0 {
			want[kind]--
			devs = append(devs, &canaryDevice{id: id, tags: tags})
		}
	}
	if len(devs) != 16 {
		t.Fatalf("device ids for every case not found: missing %v", want)
	}
	return devs
}

// TestCanaryRolloutMovesLiveSessions: issue 8's gray release on live
// devices: rule v21 (model=x1 → shards labelled version=2.1) is set on
// both gateways at 1 %, widened to 10 %, then removed. After each step
// every session lives exactly where the rules place it, the sessions
// whose placement did not change were not touched (the same session
// object on the same shard), and from the device side nothing happened:
// no reconnect, and each counter goes on by one (the state moved with the
// session).
func TestCanaryRolloutMovesLiveSessions(t *testing.T) {
	c := canaryCluster(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 4*moveWait)
	defer cancel()
	devs := canaryDevices(t, c)
	addrs := c.Addrs()
	for i, dv := range devs {
		dv.d = Dial(ctx, t, client.Config{Addr: addrs[i%len(addrs)], ID: dv.id, Tags: dv.tags})
	}
	var rules []router.Rule // the rules in force
	prev := map[string]*backend.Session{}
	step := func(name string, next []router.Rule) {
		t.Helper()
		want := map[string]string{}
		moved := 0
		for _, dv := range devs {
			want[dv.id] = canaryPlace(t, c, next, dv.id, dv.tags)
			if was := canaryPlace(t, c, rules, dv.id, dv.tags); was != want[dv.id] {
				moved++
			}
		}
		if name != "connect" {
			for i := range 2 {
				if err := c.Gateway(i).SetRules(next); err != nil {
					t.Fatalf("%s: gateway %d: SetRules: %v", name, i, err)
				}
			}
		}
		rules = next
		waitUntil(t, name+": every session lives where the rules place it, and only there", func() bool {
			per := map[string]int64{}
			for _, dv := range devs {
				s := c.ShardByName(want[dv.id]).Session(dv.id)
				if s == nil || !s.Attached() {
					return false
				}
				per[want[dv.id]]++
			}
			for _, n := range c.Active() {
				if c.ShardByName(n).Stats().Sessions != per[n] {
					return false
				}
			}
			return true
		})
		untouched := 0
		for _, dv := range devs {
			s := c.ShardByName(want[dv.id]).Session(dv.id)
			if prev[dv.id] == s {
				untouched++
			}
			prev[dv.id] = s
			reply, err := Exchange(ctx, dv.d, "tick")
			if err != nil {
				t.Fatalf("%s: %s: %v", name, dv.id, err)
			}
			shard, count, err := CounterReply(reply)
			if err != nil || shard != want[dv.id] || count != dv.count+1 {
				t.Errorf("%s: %s %v: reply %q, want %s with count %d", name, dv.id, dv.tags, reply, want[dv.id], dv.count+1)
			}
			dv.count = count
			if n := dv.d.Stats().Reconnects; n != 0 {
				t.Errorf("%s: %s reconnected %d times", name, dv.id, n)
			}
		}
		if name != "connect" && untouched != len(devs)-moved {
			t.Errorf("%s: %d sessions kept their session object, want the %d whose placement did not change",
				name, untouched, len(devs)-moved)
		}
		t.Logf("%s: %d of %d sessions moved", name, moved, len(devs))
		if name != "connect" && moved == 0 {
			t.Errorf("%s moved nothing: the test's devices do not cover it", name)
		}
	}
	step("connect", nil)
	if err := c.Gateway(0).SetRules(canaryRule(0)); !errors.Is(err, router.ErrInvalidRule) || c.Gateway(0).Rules() != nil {
		t.Fatalf("SetRules with percent 0: %v, rules now %v", err, c.Gateway(0).Rules())
	}
	step("rule at 1%", canaryRule(1))
	step("widened to 10%", canaryRule(10))
	if got := c.Gateway(1).Rules(); len(got) != 1 || got[0].Percent != 10 {
		t.Fatalf("Rules() = %+v", got)
	}
	placed := ""
	for i := range 2 {
		placed += scrape(t, c.Gateway(i).AdminAddr(), `switchyard_canary_placements_total{rule="v21",result="placed"}`)
	}
	if placed == "" {
		t.Error("no placement by rule v21 counted in switchyard_canary_placements_total")
	}
	step("rule removed", nil)
}

// TestCanaryStickyAcrossReconnects: with the rule in the gateways' config
// from the start, a device lands on the same side every time it
// connects, through the same gateway or the other one.
func TestCanaryStickyAcrossReconnects(t *testing.T) {
	rules := canaryRule(10)
	c, ctx := canaryRun(t, rules)
	addrs := c.Addrs()
	sides := map[bool]int{}
	for _, dv := range canaryDevices(t, c) {
		want := canaryPlace(t, c, rules, dv.id, dv.tags)
		sides[want == "s2"]++
		for i, gw := range []int{0, 0, 1} {
			d := Dial(ctx, t, client.Config{Addr: addrs[gw], ID: dv.id, Tags: dv.tags})
			if got := served(ctx, t, d); got != want {
				t.Errorf("%s %v, connection %d through gateway %d: served by %s, want %s", dv.id, dv.tags, i, gw, got, want)
			}
			d.Close()
		}
	}
	if sides[true] == 0 || sides[false] == 0 {
		t.Fatalf("devices on one side only: %v", sides)
	}
}

// TestCanaryPushReachesDevice: a Push from any shard reaches a device
// wherever the gateways' rules placed it, although shards do not know the
// rules (backend/forward.go probes the shards it may be on): a device the
// rule sends to the canary shard, and a device no rule selects whose ring
// owner is the canary shard (it lives on a stable shard, not its owner).
func TestCanaryPushReachesDevice(t *testing.T) {
	rules := canaryRule(100)
	c, ctx := canaryRun(t, rules)
	var canary, displaced *canaryDevice
	for i := 0; canary == nil || displaced == nil; i++ {
		id := fmt.Sprintf("pushed-%d", i)
		switch {
		case canary == nil && c.Owner(id) != "s2":
			canary = &canaryDevice{id: id, tags: map[string]string{"model": "x1"}}
		case displaced == nil && c.Owner(id) == "s2":
			displaced = &canaryDevice{id: id, tags: map[string]string{"model": "x2"}}
		}
	}
	for _, dv := range []*canaryDevice{canary, displaced} {
		holder := canaryPlace(t, c, rules, dv.id, dv.tags)
		if holder == c.Owner(dv.id) {
			t.Fatalf("%s is on its ring owner %s: not a canary case", dv.id, holder)
		}
		d := Dial(ctx, t, client.Config{Addr: c.Addrs()[0], ID: dv.id, Tags: dv.tags})
		if got := served(ctx, t, d); got != holder {
			t.Fatalf("%s served by %s, want %s", dv.id, got, holder)
		}
		for _, from := range c.Active() {
			if from == holder {
				continue
			}
			msg := "push from " + from
			if err := c.ShardByName(from).Push(dv.id, []byte(msg), true); err != nil {
				t.Fatalf("%s (on %s, ring owner %s): Push from %s: %v", dv.id, holder, c.Owner(dv.id), from, err)
			}
			m, err := d.Recv(ctx)
			if err != nil || string(m.Payload) != msg {
				t.Fatalf("%s: received %q, %v; want %q", dv.id, m.Payload, err, msg)
			}
		}
	}
}

// TestCanaryResumeAcrossGateways: a gateway drains and its devices resume
// their sessions on the other gateway, which places them by the tags of
// the resuming HELLO on the same side: each device is served by the same
// shard, its counter goes on.
func TestCanaryResumeAcrossGateways(t *testing.T) {
	rules := canaryRule(10)
	c, ctx := canaryRun(t, rules)
	addrs := c.Addrs()
	waitGateways(ctx, t, c.Gateway(0).AdminAddr(), 2, 0)
	devs := canaryDevices(t, c)
	for _, dv := range devs {
		dv.d = Dial(ctx, t, client.Config{Addr: addrs[0], ID: dv.id, Tags: dv.tags})
		if shard, n := exchangeCount(ctx, t, dv.d); shard != canaryPlace(t, c, rules, dv.id, dv.tags) || n != 1 {
			t.Fatalf("%s: served by %s with count %d", dv.id, shard, n)
		}
	}
	dctx, dcancel := context.WithTimeout(ctx, 4*time.Second)
	defer dcancel()
	closed := make(chan error, 1)
	go func() { closed <- c.Gateway(0).Close(dctx) }()
	waitUntil(t, "every device left the draining gateway", func() bool {
		for _, dv := range devs {
			if dv.d.Stats().Reconnects == 0 {
				return false
			}
		}
		return true
	})
	if err := <-closed; err != nil {
		t.Logf("gw0's drain: %v (what matters is where the devices went)", err)
	}
	for _, dv := range devs {
		want := canaryPlace(t, c, rules, dv.id, dv.tags)
		if shard, n := exchangeCount(ctx, t, dv.d); shard != want || n != 2 {
			t.Errorf("%s %v resumed through gw1: served by %s with count %d, want %s with 2", dv.id, dv.tags, shard, n, want)
		}
	}
}
