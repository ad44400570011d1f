package testcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/router"
	"github.com/switchyard-gw/switchyard/server"
)

// TestProcsCanary: docs/operations.md "Canary roll-out" against the
// binary. Two gateways started with --config FILE, two stable counter
// shards and a canary shard started with --labels version=2.1; 40 devices
// (32 tagged model=x1, 8 model=x2) stream ticks through both gateways.
// Rule v21 is written into the file and each gateway reloaded (one by
// `switchyard ctl reload`, the other by SIGHUP) at 10 %, widened to 100 %,
// lowered to 10 % (a rule at 0 % in between is refused by both paths and
// changes nothing); then rolled back: the canary shard drained by `ctl
// drain-shard`, and the rule removed. After each step exactly the devices
// the rule selects (computed with router.NewRules over the same labelled
// ring) are served by the canary shard, every other device where the
// default placement puts it, and at the end nobody is on the canary; no
// device reconnects and every counter goes on by one at each tick (the
// state moves with the session).
func TestProcsCanary(t *testing.T) {
	cp := configuredProcs(t, Options{Gateways: 2, Shards: 2, App: "counter"}, "log_level: info\n", 5*poll.Patience)
	p, ctx, bin, tok, conf := cp.Procs, cp.ctx, cp.bin, cp.tokenFile, cp.conf

	// Step 1 of the walkthrough: the canary shard joins with its label. No
	// rule targets it yet, so it takes its share of every device.
	canary := p.StartShard("canary-1", "--labels", "version=2.1")
	if err := p.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	// The walkthrough's check: the members list shows it with its label.
	var members []server.MemberInfo
	if err := json.Unmarshal([]byte(mustCtl(t, bin, p.Gateway(0), tok, []string{"-o", "json", "members"})), &members); err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(members, func(m server.MemberInfo) bool { return m.Shard == canary.Name }); i < 0 || members[i].Labels["version"] != "2.1" {
		t.Fatalf("ctl members does not list %s with version=2.1: %+v", canary.Name, members)
	}
	// labelledRing is the ring of the shards up, the canary-* ones
	// labelled version=2.1, as the gateways see it.
	labelledRing := func() *router.Ring {
		var shards []router.Shard
		for _, n := range p.Active() {
			s := router.Shard{Name: n}
			if isCanary(n) {
				s.Labels = map[string]string{"version": "2.1"}
			}
			shards = append(shards, s)
		}
		r, err := router.NewRing(router.Config{}, shards)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ring := labelledRing()
	place := func(rules []router.Rule, id string, tags map[string]string) string {
		pl, err := router.NewRules(rules)
		if err != nil {
			t.Fatal(err)
		}
		s, err := pl.Place(id, tags, ring)
		if err != nil {
			t.Fatal(err)
		}
		return s.Name
	}

	// Devices: 32 x1 of which at least 3 in the 10 % cohort, and 8 x2;
	// some of each on the canary shard before any rule.
	x1, x2 := map[string]string{"model": "x1"}, map[string]string{"model": "x2"}
	want := map[string]int{"x1 in": 3, "x1 out": 29, "x2": 8}
	var devs []*streamer
	for i := 0; len(devs) < 40; i++ {
		id := fmt.Sprintf("cohort-%d", i)
		kind, tags := "x2", x2
		if i%5 != 0 {
			kind, tags = "x1 out", x1
			if place(procsCanaryRule(10), id, x1) == canary.Name {
				kind = "x1 in"
			}
		}
		if want[kind] > 0 {
			want[kind]--
			devs = append(devs, &streamer{id: id, tags: tags})
		}
	}
	onCanary := 0
	for _, dv := range devs {
		if place(nil, dv.id, dv.tags) == canary.Name {
			onCanary++
		}
	}
	if onCanary == 0 {
		t.Fatal("no device on the canary shard before the rule: the test covers no move off it")
	}

	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i, dv := range devs {
		dv.c = Dial(ctx, t, client.Config{Addr: p.Gateway(i % 2).Addr, ID: dv.id, Tags: dv.tags})
		wg.Add(1)
		go func() { defer wg.Done(); dv.stream(sctx) }()
	}
	defer func() { stop(); wg.Wait() }()

	gws := []*Proc{p.Gateway(0), p.Gateway(1)}
	where := map[string]string{} // device → the shard it should be on
	moves := 0                   // sessions whose shard changed
	// step reloads both gateways with the configuration file ending in
	// yaml (none: no reload) and waits until every device is served where
	// rules place it over ring.
	step := func(name string, rules []router.Rule, yaml string) {
		t.Helper()
		if yaml != "" {
			writeFile(t, conf, "log_level: info\n"+yaml)
			out := mustCtl(t, bin, gws[0], tok, []string{"-o", "json", "reload"})
			var rep server.ReloadReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatal(err)
			}
			for i, r := range []server.ReloadReport{rep, sighupReload(t, gws[1])} {
				if !sameSet(r.Changed, []string{"canary"}) || len(r.RestartRequired) != 0 {
					t.Fatalf("%s: reload of gw%d: changed %v, restart required %v", name, i, r.Changed, r.RestartRequired)
				}
			}
		}
		for _, dv := range devs {
			w := place(rules, dv.id, dv.tags)
			if where[dv.id] != "" && where[dv.id] != w {
				moves++
			}
			where[dv.id] = w
		}
		in := 0
		poll.Until(t, poll.Patience, func() error {
			in = 0
			for _, dv := range devs {
				w := place(rules, dv.id, dv.tags)
				if got := dv.lastShard(); got != w {
					return fmt.Errorf("%s: %s %v served by %q, want %s", name, dv.id, dv.tags, got, w)
				}
				if isCanary(w) {
					in++
				}
			}
			return nil
		})
		t.Logf("%s: %d of %d devices on a canary shard", name, in, len(devs))
		if yaml != "" { // the walkthrough's log line names the rules in force
			wantLine := `msg="canary rules set" component=gateway rules=[]`
			if len(rules) > 0 {
				wantLine = fmt.Sprintf(`msg="canary rules set" component=gateway rules="[v21=%v%%]"`, rules[0].Percent)
			}
			for _, gw := range gws {
				last := ""
				for _, line := range strings.Split(gw.Log(), "\n") {
					if strings.Contains(line, `msg="canary rules set"`) {
						last = line
					}
				}
				if !strings.Contains(last, wantLine) {
					t.Errorf("%s: %s: last rules line %q, want %s", name, gw.Name, last, wantLine)
				}
			}
		}
	}
	step("before any rule", nil, "")
	const rule = "canary:\n  - {name: v21, match: {model: x1}, percent: %v, labels: {version: \"2.1\"}}\n"
	step("10 %", procsCanaryRule(10), fmt.Sprintf(rule, 10))
	// A bad rule is refused as a whole by both reload paths, and the
	// gateways keep the rule they had.
	writeFile(t, conf, "log_level: info\n"+fmt.Sprintf(rule, 0))
	if r := ctl(t, bin, gws[0], tok, "reload"); r.code == 0 || !strings.Contains(r.err, "percent") {
		t.Fatalf("ctl reload of a rule at 0 %%: exit %d, %q: want a failure naming percent", r.code, r.err)
	}
	refusals := strings.Count(gws[1].Log(), "configuration reload refused")
	if err := gws[1].Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, poll.Patience, func() error {
		if strings.Count(gws[1].Log(), "configuration reload refused") == refusals {
			return errors.New("gw1 did not refuse the rule at 0 %")
		}
		return nil
	})
	step("bad rule refused", procsCanaryRule(10), "")
	step("100 %", procsCanaryRule(100), fmt.Sprintf(rule, 100))
	step("lowered to 10 %", procsCanaryRule(10), fmt.Sprintf(rule, 10))

	// Roll back: drain the canary shard while the rule is still in force
	// (its devices move live to the stable shards, counted as fallback),
	// then remove the rule, which then moves nothing. Removing the rule
	// first would make the canary shard an ordinary shard that takes its
	// ring share of every device (docs/operations.md "Rolling back").
	drain := func(pr *Proc) {
		t.Helper()
		mustCtl(t, bin, gws[0], tok, []string{"drain-shard", pr.Name})
		poll.Until(t, poll.Patience, func() error {
			if !pr.Exited() {
				return fmt.Errorf("%s has not exited after drain-shard", pr.Name)
			}
			return nil
		})
		if err := p.WaitConverged(ctx); err != nil {
			t.Fatal(err)
		}
		ring = labelledRing()
	}
	drain(canary)
	step("canary shard drained", procsCanaryRule(10), "")
	fallback := ""
	for _, gw := range gws {
		fallback += scrapeAuth(t, gw.Admin, `switchyard_canary_placements_total{rule="v21",result="fallback"}`)
	}
	if fallback == "" {
		t.Error("the drained canary's cohort was not counted as fallback")
	}
	// The walkthrough's other order (rule first, then the shard): a canary
	// shard joining under the rule takes the cohort, live, and nothing
	// else; then it is rolled back the same way.
	canary2 := p.StartShard("canary-2", "--labels", "version=2.1")
	if err := p.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	ring = labelledRing()
	step("canary-2 joined under the rule", procsCanaryRule(10), "")
	drain(canary2)
	step("canary-2 drained", procsCanaryRule(10), "")
	step("rule removed", nil, "# canary rule removed\n")

	stop()
	wg.Wait()
	for _, dv := range devs {
		if err := dv.failure(); err != nil {
			t.Error(err)
		}
		if n := dv.c.Stats().Reconnects; n != 0 {
			t.Errorf("%s reconnected %d times", dv.id, n)
		}
	}
	placed, movedOK := 0.0, 0.0
	for _, gw := range gws {
		placed += metric(t, gw.Admin, `switchyard_canary_placements_total{rule="v21",result="placed"}`)
		movedOK += metric(t, gw.Admin, `switchyard_session_moves_total{result="ok"}`)
	}
	if placed == 0 {
		t.Error("no placement by rule v21 counted in switchyard_canary_placements_total")
	}
	// Every session whose placement changed moved once, and no other did.
	if movedOK != float64(moves) {
		t.Errorf("switchyard_session_moves_total{result=\"ok\"} = %v over both gateways, want the %d placements that changed", movedOK, moves)
	}
}

func isCanary(shard string) bool { return strings.HasPrefix(shard, "canary-") }

func procsCanaryRule(pct float64) []router.Rule {
	return []router.Rule{{Name: "v21", Match: map[string]string{"model": "x1"}, Percent: pct,
		Labels: map[string]string{"version": "2.1"}}}
}

// streamer is a device of TestProcsCanary: it ticks the counter app
// every 150 ms and keeps the shard of its last reply; a counter that does
// not go on by one is a failure.
type streamer struct {
	id   string
	tags map[string]string
	c    *client.Client

	mu    sync.Mutex
	shard string
	count uint64
	err   error
}

func (s *streamer) stream(ctx context.Context) {
	for ctx.Err() == nil {
		reply, err := Exchange(ctx, s.c, "tick")
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		if err == nil {
			var shard string
			var n uint64
			if shard, n, err = CounterReply(reply); err == nil && n != s.count+1 {
				err = fmt.Errorf("count %d after %d (on %s, then %s): the state did not move", n, s.count, s.shard, shard)
			}
			s.shard, s.count = shard, n
		}
		if err != nil {
			s.err = fmt.Errorf("%s: %w", s.id, err)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(150 * time.Millisecond):
		}
	}
}

func (s *streamer) lastShard() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return "failed: " + s.err.Error()
	}
	return s.shard
}

func (s *streamer) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// scrapeAuth is scrape for a gateway with the admin token.
func scrapeAuth(t *testing.T, admin, prefix string) string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(adminBody(t, admin, adminToken, "/metrics"), "\n") {
		if strings.HasPrefix(line, prefix) && !strings.HasSuffix(line, " 0") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "; ")
}
