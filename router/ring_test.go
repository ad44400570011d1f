package router

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/switchyard-gw/switchyard/protocol"
)

func TestRingDeterministic(t *testing.T) {
	for _, n := range []int{1, 3, 50} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			shards := testShards("shard-", n)
			want := mustRing(t, Config{}, shards)
			rng := rand.New(rand.NewPCG(1, uint64(n)))
			for range 5 {
				shuffled := slices.Clone(shards)
				rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				got := mustRing(t, Config{}, shuffled)
				if got.Fingerprint() != want.Fingerprint() || !slices.Equal(got.table, want.table) {
					t.Fatalf("shuffled input gives another ring: %v vs %v", got, want)
				}
				for _, id := range deviceIDs()[:1000] {
					a, _ := got.Owner(id)
					b, _ := want.Owner(id)
					if a.Name != b.Name {
						t.Fatalf("%s: %s vs %s", id, a.Name, b.Name)
					}
				}
			}
		})
	}
}

func TestRingFingerprint(t *testing.T) {
	base := testShards("s", 3)
	fp := mustRing(t, Config{}, base).Fingerprint()
	mutate := map[string]func() (Config, []Shard){
		"addr": func() (Config, []Shard) {
			s := slices.Clone(base)
			s[1].Addr = "10.9.9.9:1"
			return Config{}, s
		},
		"label": func() (Config, []Shard) {
			s := slices.Clone(base)
			s[0].Labels = map[string]string{"canary": "true"}
			return Config{}, s
		},
		"name": func() (Config, []Shard) {
			s := slices.Clone(base)
			s[2].Name = "t3"
			return Config{}, s
		},
		"fewer shards": func() (Config, []Shard) { return Config{}, base[:2] },
		"partitions":   func() (Config, []Shard) { return Config{PartitionCount: 4091}, base },
		"rf":           func() (Config, []Shard) { return Config{ReplicationFactor: 10}, base },
		"load":         func() (Config, []Shard) { return Config{Load: 1.5}, base },
		"hasher":       func() (Config, []Shard) { return Config{Hasher: fnv1a{}}, base },
	}
	for name, f := range mutate {
		t.Run(name, func(t *testing.T) {
			cfg, shards := f()
			if got := mustRing(t, cfg, shards).Fingerprint(); got == fp {
				t.Fatalf("fingerprint unchanged: %016x", got)
			}
		})
	}
	var nilRing *Ring
	if nilRing.Fingerprint() != 0 || mustRing(t, Config{}, nil).Fingerprint() == 0 {
		t.Fatal("nil ring must have fingerprint 0, an empty ring a real one")
	}
}

func TestRingErrors(t *testing.T) {
	tests := []struct {
		name   string
		shards []Shard
		want   error
	}{
		{"empty name", []Shard{{Name: "a"}, {Addr: "x:1"}}, ErrInvalidShard},
		{"duplicate", []Shard{{Name: "a", Addr: "x:1"}, {Name: "b"}, {Name: "a", Addr: "y:1"}}, ErrDuplicateShard},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewRing(Config{}, tt.shards); !errors.Is(err, tt.want) {
				t.Fatalf("NewRing() = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestOwnerEmptyRing(t *testing.T) {
	var nilRing *Ring
	for name, r := range map[string]*Ring{"nil": nilRing, "empty": mustRing(t, Config{}, nil), "empty slice": mustRing(t, Config{}, []Shard{})} {
		t.Run(name, func(t *testing.T) {
			_, err := r.Owner("device-1")
			if !errors.Is(err, ErrNoShards) {
				t.Fatalf("Owner() = %v, want ErrNoShards", err)
			}
			if code := protocol.CodeOf(err); code != protocol.CodeUnavailable {
				t.Fatalf("CodeOf = %d, want 503", code)
			}
			if r.Len() != 0 || len(r.Shards()) != 0 || len(r.Loads()) != 0 {
				t.Fatal("empty ring reports shards")
			}
		})
	}
}

func TestOwnerZeroAlloc(t *testing.T) {
	t.Run("xxhash", func(t *testing.T) {
		r := mustRing(t, Config{}, testShards("s", 7))
		id := deviceIDs()[7]
		if n := testing.AllocsPerRun(1000, func() { _, _ = r.Owner(id) }); n != 0 {
			t.Fatalf("Owner allocates %v times", n)
		}
	})
	t.Run("custom hasher view", func(t *testing.T) {
		r := mustRing(t, Config{Hasher: sumHasher{}}, testShards("s", 7))
		id := deviceIDs()[9]
		if n := testing.AllocsPerRun(1000, func() { _, _ = r.Owner(id) }); n != 0 {
			t.Fatalf("Owner with a custom hasher allocates %v times", n)
		}
		if got, want := r.partition(id), int(sumHasher{}.Sum64([]byte(id))%r.parts); got != want {
			t.Fatalf("partition %d, want %d", got, want)
		}
	})
}

// sumHasher is a non-allocating custom hasher (FNV-1a inline).
type sumHasher struct{}

func (sumHasher) Sum64(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return h
}

func TestRingCopiesInput(t *testing.T) {
	shards := testShards("s", 3)
	shards[0].Labels = map[string]string{"canary": "true"}
	r := mustRing(t, Config{}, shards)
	shards[0].Labels["canary"] = "false"
	shards[1].Name = "changed"
	s, ok := r.Shard("s1")
	if !ok || s.Labels["canary"] != "true" {
		t.Fatalf("Shard(s1) = %+v, %v: input mutation leaked into the ring", s, ok)
	}
	if _, ok := r.Shard("s2"); !ok {
		t.Fatal("s2 missing")
	}
	if _, ok := r.Shard("changed"); ok {
		t.Fatal("renamed input shard visible")
	}
	got := r.Shards()
	got[0].Name = "x"
	if r.Shards()[0].Name != "s1" {
		t.Fatal("Shards() returns the ring's own slice")
	}
}

func BenchmarkOwner(b *testing.B) {
	for _, n := range []int{1, 3, 50, 200} {
		b.Run(fmt.Sprintf("shards=%d", n), func(b *testing.B) {
			r := mustRing(b, Config{}, testShards("shard-", n))
			keys := deviceIDs()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				_, _ = r.Owner(keys[i%len(keys)])
				i++
			}
		})
	}
}

func BenchmarkNewRing(b *testing.B) {
	for _, n := range []int{3, 50, 200} {
		b.Run(fmt.Sprintf("shards=%d", n), func(b *testing.B) {
			shards := testShards("shard-", n)
			b.ReportAllocs()
			for b.Loop() {
				_ = mustRing(b, Config{}, shards)
			}
		})
	}
}

// BenchmarkConsistentNew is the library's own build, for comparison.
func BenchmarkConsistentNew(b *testing.B) {
	for _, n := range []int{3, 50, 200} {
		b.Run(fmt.Sprintf("shards=%d", n), func(b *testing.B) {
			shards := testShards("shard-", n)
			b.ReportAllocs()
			for b.Loop() {
				_, _ = oracle(b, Config{}, shards)
			}
		})
	}
}
