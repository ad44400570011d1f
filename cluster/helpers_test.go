package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/internal/leakcheck"
	"github.com/switchyard-gw/switchyard/internal/poll"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m, nil)
}

// patience bounds every wait for a cluster condition: under
// go test -race ./... on a 2-core box this package shares the cores with
// multi-process clusters and load generators.
const patience = poll.Patience

// testKey returns a deterministic 32-byte gossip key.
func testKey(b byte) []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = b
	}
	return k
}

// newNode creates (not starts) a node on 127.0.0.1:0 with fast timings;
// edit changes the config first. The node is closed at cleanup.
func newNode(t testing.TB, name string, edit func(*Config)) *Node {
	t.Helper()
	cfg := Config{
		Name:   name,
		Bind:   "127.0.0.1:0",
		Keys:   [][]byte{testKey(1)},
		Timing: FastTiming(),
		Meta:   Meta{Role: RoleBackend, Shard: "shard-" + name, Link: "127.0.0.1:1", Version: "test"},
	}
	if edit != nil {
		edit(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	t.Cleanup(func() { _ = n.Close(context.Background()) })
	return n
}

// startNode starts n, failing the test on error.
func startNode(t testing.TB, n *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatalf("Start(%s): %v", n.Name(), err)
	}
}

// startCluster starts size nodes, each joining the first, and waits until
// every node sees every other.
func startCluster(t testing.TB, size int, edit func(*Config)) []*Node {
	t.Helper()
	return buildCluster(t, size, false, patience, edit)
}

// buildCluster starts size nodes; each joins the first, or every node
// started before it with allSeeds (a join push/pulls with every seed, so
// each one learns of the newcomer directly instead of by gossip).
func buildCluster(t testing.TB, size int, allSeeds bool, within time.Duration, edit func(*Config)) []*Node {
	t.Helper()
	nodes := make([]*Node, size)
	for i := range nodes {
		var seeds []string
		for j := range i {
			if j == 0 || allSeeds {
				seeds = append(seeds, nodes[j].Addr())
			}
		}
		nodes[i] = newNode(t, fmt.Sprintf("n%02d", i), func(c *Config) {
			c.Seeds = seeds
			if edit != nil {
				edit(c)
			}
		})
		startNode(t, nodes[i])
	}
	waitConverged(t, within, nodes...)
	return nodes
}

// waitConverged waits until every node sees exactly the given nodes alive.
func waitConverged(t testing.TB, within time.Duration, nodes ...*Node) {
	t.Helper()
	waitFor(t, within, func() error {
		for _, n := range nodes {
			alive := aliveNames(n)
			if len(alive) != len(nodes) {
				return fmt.Errorf("%s sees %d alive (%v), want %d", n.Name(), len(alive), alive, len(nodes))
			}
			for _, o := range nodes {
				if !alive[o.Name()] {
					return fmt.Errorf("%s does not see %s", n.Name(), o.Name())
				}
			}
		}
		return nil
	})
}

func aliveNames(n *Node) map[string]bool {
	out := map[string]bool{}
	for _, m := range n.Members() {
		if m.Alive {
			out[m.Name] = true
		}
	}
	return out
}

// waitFor polls cond until it returns nil or the time is up.
func waitFor(t testing.TB, within time.Duration, cond func() error) {
	t.Helper()
	poll.Until(t, within, cond)
}

// recorder consumes a node's Events on one goroutine, which ends when
// Close closes the channel.
type recorder struct {
	mu     sync.Mutex
	events []Event
	done   chan struct{}
}

func record(t testing.TB, n *Node) *recorder {
	r := &recorder{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for ev := range n.Events() {
			r.mu.Lock()
			r.events = append(r.events, ev)
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = n.Close(context.Background())
		<-r.done
	})
	return r
}

// about returns the events recorded about member name.
func (r *recorder) about(name string) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, ev := range r.events {
		if ev.Member.Name == name {
			out = append(out, ev)
		}
	}
	return out
}

// last returns the last event about name.
func (r *recorder) last(name string) (Event, bool) {
	evs := r.about(name)
	if len(evs) == 0 {
		return Event{}, false
	}
	return evs[len(evs)-1], true
}
