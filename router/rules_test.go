package router

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// canaryRing is 4 stable shards and 2 shards labelled version=2.1.
func canaryRing(t testing.TB) *Ring {
	t.Helper()
	shards := testShards("s", 6)
	for _, i := range []int{4, 5} {
		shards[i].Labels = map[string]string{"version": "2.1", "zone": "a"}
	}
	return mustRing(t, Config{}, shards)
}

func mustRules(t testing.TB, rules ...Rule) *Rules {
	t.Helper()
	p, err := NewRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	return p.(*Rules)
}

var v21 = map[string]string{"version": "2.1"}

// TestRulesPercent: a rule's share of 100,000 device ids is within ±1 %
// (absolute) of its percent, and its devices all land on the labelled
// shards, none of the others does.
func TestRulesPercent(t *testing.T) {
	r := canaryRing(t)
	for _, pct := range []float64{0.5, 1, 10, 50, 100} {
		p := mustRules(t, Rule{Name: "v21", Percent: pct, Labels: v21})
		in := 0
		for _, id := range deviceIDs() {
			pl, err := p.Explain(id, nil, r)
			if err != nil {
				t.Fatal(err)
			}
			canary := pl.Shard.Labels["version"] == "2.1"
			if canary != (pl.Rule == "v21") || pl.Fallback {
				t.Fatalf("%s: %+v", id, pl)
			}
			if canary {
				in++
			}
		}
		got := 100 * float64(in) / float64(len(deviceIDs()))
		if math.Abs(got-pct) > 1 {
			t.Errorf("percent %v: %.3f %% of the devices selected", pct, got)
		}
		t.Logf("percent %v: %.3f %%", pct, got)
	}
}

// TestRulesIndependentDraws: two rules' cohorts and the ring's placement
// are independent: two 50 % rules overlap on about 25 % of the devices,
// and a 10 % rule takes about 10 % of every shard's devices.
func TestRulesIndependentDraws(t *testing.T) {
	a := mustRules(t, Rule{Name: "a", Percent: 50, Labels: v21}).rules[0]
	b := mustRules(t, Rule{Name: "b", Percent: 50, Labels: v21}).rules[0]
	c := mustRules(t, Rule{Name: "c", Percent: 10, Labels: v21}).rules[0]
	r := mustRing(t, Config{}, testShards("s", 4))
	both := 0
	perShard, inShard := map[string]int{}, map[string]int{}
	for _, id := range deviceIDs() {
		if a.selects(id, nil) && b.selects(id, nil) {
			both++
		}
		s, _ := r.Owner(id)
		perShard[s.Name]++
		if c.selects(id, nil) {
			inShard[s.Name]++
		}
	}
	if got := 100 * float64(both) / float64(len(deviceIDs())); math.Abs(got-25) > 1 {
		t.Errorf("two 50 %% rules overlap on %.2f %% of the devices, want 25 ± 1", got)
	}
	for s, n := range perShard {
		if got := 100 * float64(inShard[s]) / float64(n); math.Abs(got-10) > 1 {
			t.Errorf("shard %s: %.2f %% of its devices in a 10 %% rule", s, got)
		}
	}
}

// TestRulesSticky: the same device is placed the same way on every call,
// by independently built rules (two gateways), and widening a rule keeps
// its devices (1 % ⊂ 10 % ⊂ 50 % under the same name).
func TestRulesSticky(t *testing.T) {
	r := canaryRing(t)
	r2 := canaryRing(t) // another gateway's ring of the same shards
	pcts := []float64{1, 10, 50}
	var gw1, gw2 []*Rules
	for _, pct := range pcts {
		gw1 = append(gw1, mustRules(t, Rule{Name: "v21", Percent: pct, Labels: v21}))
		gw2 = append(gw2, mustRules(t, Rule{Name: "v21", Percent: pct, Labels: v21}))
	}
	for _, id := range deviceIDs()[:20000] {
		wasIn := false
		for i := range pcts {
			a, _ := gw1[i].Explain(id, nil, r)
			again, _ := gw1[i].Explain(id, nil, r)
			b, _ := gw2[i].Explain(id, nil, r2)
			if a.Shard.Name != again.Shard.Name || a.Shard.Name != b.Shard.Name || a.Rule != b.Rule {
				t.Fatalf("%s at %v %%: %+v, again %+v, other gateway %+v", id, pcts[i], a, again, b)
			}
			in := a.Rule != ""
			if wasIn && !in {
				t.Fatalf("%s left the cohort when the rule widened to %v %%", id, pcts[i])
			}
			wasIn = in
		}
	}
}

// TestRulesMatchAndOrder: Match selects by HELLO tags (all must be
// equal); the first rule that selects a device places it.
func TestRulesMatchAndOrder(t *testing.T) {
	shards := testShards("s", 5)
	shards[3].Labels = map[string]string{"version": "2.1"}
	shards[4].Labels = map[string]string{"version": "3.0"}
	r := mustRing(t, Config{}, shards)
	p := mustRules(t,
		Rule{Name: "x1", Match: map[string]string{"model": "x1", "region": "eu"}, Percent: 100, Labels: v21},
		Rule{Name: "all", Percent: 100, Labels: map[string]string{"version": "3.0"}},
	)
	tests := []struct {
		tags  map[string]string
		shard string
		rule  string
	}{
		{map[string]string{"model": "x1", "region": "eu", "ver": "7"}, "s4", "x1"},
		{map[string]string{"model": "x1"}, "s5", "all"},
		{map[string]string{"model": "x2", "region": "eu"}, "s5", "all"},
		{nil, "s5", "all"},
	}
	for _, tt := range tests {
		pl, err := p.Explain("dev-1", tt.tags, r)
		if err != nil || pl.Shard.Name != tt.shard || pl.Rule != tt.rule {
			t.Errorf("tags %v: %+v, %v; want %s by %s", tt.tags, pl, err, tt.shard, tt.rule)
		}
	}
}

// TestRulesTargetBalanced: the selected devices spread over all the
// target shards by the bounded-load ring of that subset.
func TestRulesTargetBalanced(t *testing.T) {
	r := canaryRing(t)
	p := mustRules(t, Rule{Name: "v21", Percent: 100, Labels: v21})
	n := map[string]int{}
	for _, id := range deviceIDs()[:20000] {
		pl, _ := p.Explain(id, nil, r)
		n[pl.Shard.Name]++
	}
	if len(n) != 2 || n["s5"] < 8000 || n["s6"] < 8000 {
		t.Fatalf("100 %% on 2 canary shards: %v", n)
	}
}

// TestRulesDefaultExcludesCanary: devices no rule selects never land on a
// rule's target shards, and a canary shard joining or leaving the ring
// moves none of them; when every shard is a target, the default placement
// is the ring owner.
func TestRulesDefaultExcludesCanary(t *testing.T) {
	stable := testShards("s", 4)
	withCanary := canaryRing(t)
	p := mustRules(t, Rule{Name: "v21", Percent: 10, Labels: v21})
	before := mustRing(t, Config{}, stable)
	for _, id := range deviceIDs()[:20000] {
		pl, _ := p.Explain(id, nil, withCanary)
		if pl.Rule != "" {
			continue
		}
		if pl.Shard.Labels != nil {
			t.Fatalf("%s not selected but placed on canary shard %s", id, pl.Shard.Name)
		}
		if o, _ := before.Owner(id); o.Name != pl.Shard.Name {
			t.Fatalf("%s: the canary shards' arrival moved it %s → %s", id, o.Name, pl.Shard.Name)
		}
	}

	all := mustRing(t, Config{}, withCanary.Shards()[4:]) // canary shards only
	for _, id := range deviceIDs()[:1000] {
		pl, _ := p.Explain(id, nil, all)
		if o, _ := all.Owner(id); pl.Shard.Name != o.Name {
			t.Fatalf("every shard labelled: %s placed on %s, owner %s", id, pl.Shard.Name, o.Name)
		}
	}
}

// TestRulesFallback: a rule whose labels no shard carries places its
// devices by the default placement, flagged Fallback.
func TestRulesFallback(t *testing.T) {
	r := canaryRing(t)
	p := mustRules(t,
		Rule{Name: "gone", Percent: 100, Match: map[string]string{"model": "x9"}, Labels: map[string]string{"version": "9"}},
		Rule{Name: "v21", Percent: 100, Match: map[string]string{"model": "x1"}, Labels: v21})
	for _, id := range deviceIDs()[:2000] {
		pl, err := p.Explain(id, map[string]string{"model": "x9"}, r)
		if err != nil || pl.Rule != "gone" || !pl.Fallback || pl.Shard.Labels != nil {
			t.Fatalf("%s: %+v, %v: want a fallback to a stable shard", id, pl, err)
		}
		plain, _ := p.Explain(id, nil, r)
		if plain.Shard.Name != pl.Shard.Name {
			t.Fatalf("%s: fallback to %s, default placement %s", id, pl.Shard.Name, plain.Shard.Name)
		}
	}
	if _, err := p.Explain("d", nil, mustRing(t, Config{}, nil)); !errors.Is(err, ErrNoShards) {
		t.Fatalf("empty ring: %v", err)
	}
}

func TestNewRulesValidation(t *testing.T) {
	ok := Rule{Name: "v21", Percent: 1, Labels: v21}
	with := func(f func(*Rule)) Rule { r := ok; f(&r); return r }
	tests := []struct {
		name  string
		rules []Rule
		want  string // in the error; "" = valid
	}{
		{"none", nil, ""},
		{"valid", []Rule{ok, with(func(r *Rule) { r.Name, r.Percent, r.Match = "x1", 100, map[string]string{"model": "x1"} })}, ""},
		{"fraction", []Rule{with(func(r *Rule) { r.Percent = 0.01 })}, ""},
		{"no name", []Rule{with(func(r *Rule) { r.Name = "" })}, "name"},
		{"bad name", []Rule{with(func(r *Rule) { r.Name = "a b" })}, "name"},
		{"duplicate", []Rule{ok, ok}, "duplicate name"},
		{"percent 0", []Rule{with(func(r *Rule) { r.Percent = 0 })}, "percent 0"},
		{"percent negative", []Rule{with(func(r *Rule) { r.Percent = -1 })}, "percent -1"},
		{"percent over 100", []Rule{with(func(r *Rule) { r.Percent = 100.5 })}, "percent 100.5"},
		{"percent NaN", []Rule{with(func(r *Rule) { r.Percent = math.NaN() })}, "percent NaN"},
		{"no labels", []Rule{with(func(r *Rule) { r.Labels = nil })}, "labels: required"},
		{"bad label value", []Rule{with(func(r *Rule) { r.Labels = map[string]string{"version": "2 1"} })}, "version="},
		{"empty label value", []Rule{with(func(r *Rule) { r.Labels = map[string]string{"version": ""} })}, "version="},
		{"empty match key", []Rule{with(func(r *Rule) { r.Match = map[string]string{"": "x"} })}, "empty tag name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewRules(tt.rules)
			if tt.want == "" {
				if err != nil || p == nil {
					t.Fatalf("NewRules: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidRule) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewRules: %v, want ErrInvalidRule mentioning %q", err, tt.want)
			}
		})
	}
	// Every problem at once.
	err := ValidateRules([]Rule{with(func(r *Rule) { r.Percent = 0 }), with(func(r *Rule) { r.Labels = nil })})
	if err == nil || !strings.Contains(err.Error(), "percent 0") || !strings.Contains(err.Error(), "duplicate name") ||
		!strings.Contains(err.Error(), "labels: required") {
		t.Fatalf("ValidateRules: %v", err)
	}
	if p, _ := NewRules(nil); p != Owner {
		t.Fatal("no rules must be the Owner placer")
	}
}

func TestValidateLabels(t *testing.T) {
	if err := ValidateLabels(map[string]string{"version": "2.1", "zone": "eu-west_1"}); err != nil {
		t.Fatal(err)
	}
	many := map[string]string{}
	for _, k := range strings.Split("a b c d e f g h i", " ") {
		many[k] = "1"
	}
	for name, labels := range map[string]map[string]string{
		"empty key": {"": "x"}, "empty value": {"k": ""}, "comma": {"k": "a,b"}, "equals": {"k=1": "x"},
		"long": {"k": strings.Repeat("x", MaxLabelLen+1)}, "too many": many,
	} {
		if err := ValidateLabels(labels); !errors.Is(err, ErrInvalidLabel) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestRulesPlaceZeroAlloc: once the placements of a ring are built, a
// placement costs no allocation (it runs at every session open and for
// every session on each mover pass).
func TestRulesPlaceZeroAlloc(t *testing.T) {
	r := canaryRing(t)
	p := mustRules(t, Rule{Name: "v21", Match: map[string]string{"model": "x1"}, Percent: 50, Labels: v21})
	tags := map[string]string{"model": "x1"}
	_, _ = p.Place("warm", tags, r)
	for _, id := range deviceIDs()[:4] {
		if n := testing.AllocsPerRun(200, func() { _, _ = p.Explain(id, tags, r) }); n != 0 {
			t.Fatalf("Explain allocates %v times", n)
		}
	}
}

// TestRouterSetPlacer: the Router's Placer swaps at run time, and
// Placement reports the rule.
func TestRouterSetPlacer(t *testing.T) {
	rt, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	shards := canaryRing(t).Shards()
	if _, _, _, err := rt.Update(MembershipFunc(func() []Shard { return shards })); err != nil {
		t.Fatal(err)
	}
	id := deviceIDs()[1]
	owner, _ := rt.Ring().Owner(id)
	if pl, err := rt.Placement(id, nil); err != nil || pl.Shard.Name != owner.Name || pl.Rule != "" {
		t.Fatalf("Owner placer: %+v %v", pl, err)
	}
	rt.SetPlacer(mustRules(t, Rule{Name: "v21", Percent: 100, Labels: v21}))
	if pl, _ := rt.Placement(id, nil); pl.Rule != "v21" || pl.Shard.Labels["version"] != "2.1" {
		t.Fatalf("rules placer: %+v", pl)
	}
	if s, _ := rt.Place(id, nil); s.Labels["version"] != "2.1" {
		t.Fatalf("Place ignores the new placer: %s", s.Name)
	}
	rt.SetPlacer(nil)
	if s, _ := rt.Place(id, nil); s.Name != owner.Name {
		t.Fatalf("SetPlacer(nil): %s, want the owner %s", s.Name, owner.Name)
	}
}

func BenchmarkRulesExplain(b *testing.B) {
	r := canaryRing(b)
	p := mustRules(b, Rule{Name: "v21", Match: map[string]string{"model": "x1"}, Percent: 10, Labels: v21})
	tags := map[string]string{"model": "x1"}
	ids := deviceIDs()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_, _ = p.Explain(ids[i%len(ids)], tags, r)
		i++
	}
}
