package router

import (
	"fmt"
	"hash/fnv"
	"sync"
	"testing"
	"time"
)

// testShards returns n shards named prefix1 … prefixN with distinct addrs.
func testShards(prefix string, n int) []Shard {
	s := make([]Shard, n)
	for i := range s {
		s[i] = Shard{
			Name: fmt.Sprintf("%s%d", prefix, i+1),
			Addr: fmt.Sprintf("10.0.%d.%d:7500", i/250, i%250+1),
		}
	}
	return s
}

// mustRing builds a ring or fails the test.
func mustRing(t testing.TB, cfg Config, shards []Shard) *Ring {
	t.Helper()
	r, err := NewRing(cfg, shards)
	if err != nil {
		t.Fatalf("NewRing(%d shards): %v", len(shards), err)
	}
	return r
}

var (
	idsOnce sync.Once
	ids     []string
)

// deviceIDs returns the same 100,000 device ids on every call.
func deviceIDs() []string {
	idsOnce.Do(func() {
		ids = make([]string, 100_000)
		for i := range ids {
			ids[i] = fmt.Sprintf("dev-%08x-%d", uint32(i)*2654435761, i)
		}
	})
	return ids
}

// without returns shards minus the one called name.
func without(shards []Shard, name string) []Shard {
	var out []Shard
	for _, s := range shards {
		if s.Name != name {
			out = append(out, s)
		}
	}
	return out
}

// fnv1a is plain 64-bit FNV-1a, the hasher DESIGN.md warns about.
type fnv1a struct{}

func (fnv1a) Sum64(b []byte) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(b)
	return h.Sum64()
}

// fakeClock is a manual clock for circuit tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
