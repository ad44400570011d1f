package backend

import (
	"fmt"
	"slices"
	"testing"

	"github.com/switchyard-gw/switchyard/router"
)

// TestProbeTargets: without labelled shards nothing is probed; with them,
// the candidates are the ring owner, the owner among the unlabelled
// shards and every labelled shard, never the caller, each once; and they
// include wherever canary rules targeting the labelled shards place the
// device.
func TestProbeTargets(t *testing.T) {
	shards := []router.Shard{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}}
	plain, err := router.NewRing(router.Config{}, shards)
	if err != nil {
		t.Fatal(err)
	}
	if got := probeTargets(plain, unlabelledRing(plain), "dev", "a"); got != nil || unlabelledRing(plain) != nil {
		t.Fatalf("no labels: %v", got)
	}
	shards[3].Labels = map[string]string{"version": "2.1"}
	r, _ := router.NewRing(router.Config{}, shards)
	unl := unlabelledRing(r)
	if unl.Len() != 3 {
		t.Fatalf("unlabelled ring of %d shards", unl.Len())
	}
	rules, _ := router.NewRules([]router.Rule{{Name: "v21", Percent: 50, Labels: map[string]string{"version": "2.1"}}})
	for i := range 500 {
		id := fmt.Sprintf("dev-%d", i)
		for _, self := range []string{"a", "d"} {
			got := probeTargets(r, unl, id, self)
			if slices.Contains(got, self) || !slices.Contains(got, "d") && self != "d" {
				t.Fatalf("%s from %s: %v", id, self, got)
			}
			owner, _ := r.Owner(id)
			placed, _ := rules.Place(id, nil, r)
			for _, want := range []string{owner.Name, placed.Name} {
				if want != self && !slices.Contains(got, want) {
					t.Fatalf("%s from %s: %v misses %s", id, self, got, want)
				}
			}
			if c := slices.Compact(slices.Sorted(slices.Values(got))); len(c) != len(got) {
				t.Fatalf("%s: duplicates in %v", id, got)
			}
		}
	}
}
