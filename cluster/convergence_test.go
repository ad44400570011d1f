package cluster

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestConvergenceLAN measures, with memberlist's DEFAULT LAN timings, how
// long it takes until every member of a 10-node cluster sees a change:
// a join, a metadata update (draining), a graceful leave and a kill
// (Close without Leave). The figures go to docs/benchmarks.md:
//
//	go test -run TestConvergenceLAN -count=1 -v ./cluster/
func TestConvergenceLAN(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: waits for failure detection with LAN timings")
	}
	lan := func(c *Config) { c.Timing = Timing{} }
	// Setup joins every node to all the others so that it converges at
	// once; the measured join below uses one seed, like a real node.
	nodes := buildCluster(t, 9, true, patience, lan)

	joiner := newNode(t, "n09", func(c *Config) { lan(c); c.Seeds = []string{nodes[0].Addr()} })
	nodes = append(nodes, joiner)
	measure(t, "join (one seed)", nodes, func() error { return joiner.Start(context.Background()) },
		func(n *Node) bool {
			m, ok := n.Member(joiner.Name())
			return ok && m.Alive
		})

	target := nodes[4]
	measure(t, "update (SetDraining)", nodes, target.SetDraining, func(n *Node) bool {
		m, _ := n.Member(target.Name())
		return m.Meta.State == StateDraining
	})

	leaver := nodes[5]
	nodes = slices.Delete(nodes, 5, 6)
	measure(t, "graceful leave (Leave)", nodes, func() error { return leaver.Leave(context.Background()) },
		func(n *Node) bool {
			m, _ := n.Member(leaver.Name())
			return !m.Alive
		})

	victim := nodes[6]
	nodes = slices.Delete(nodes, 6, 7)
	measure(t, "kill (Close, no leave)", nodes, func() error { return victim.Close(context.Background()) },
		func(n *Node) bool {
			m, _ := n.Member(victim.Name())
			return !m.Alive
		})
}

// measure runs action and, meanwhile, polls every node until each one
// sees its effect; it logs when the first, the median and the last member
// saw it, and how long action itself took.
func measure(t *testing.T, what string, nodes []*Node, action func() error, sees func(*Node) bool) {
	t.Helper()
	start := time.Now()
	took := make(chan error, 1)
	var call time.Duration
	go func() {
		err := action()
		call = time.Since(start)
		took <- err
	}()
	seen := make([]time.Duration, len(nodes))
	left := len(nodes)
	// A member that every gossip copy of a change missed learns it at
	// the next push/pull (30 s with LAN timings): allow for that tail.
	deadline := start.Add(patience)
	for left > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d members never saw it", what, left, len(nodes))
		}
		for i, n := range nodes {
			if seen[i] == 0 && sees(n) {
				seen[i] = time.Since(start)
				left--
			}
		}
		time.Sleep(time.Millisecond)
	}
	if err := <-took; err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	slices.Sort(seen)
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	t.Logf("%-24s observers=%d first=%v median=%v all=%v (call returned after %v)",
		what, len(nodes), r(seen[0]), r(seen[len(seen)/2]), r(seen[len(seen)-1]), r(call))
}
