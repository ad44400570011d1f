package router

import (
	"errors"
	"fmt"
	"testing"

	"github.com/buraksezer/consistent"
)

// oracle builds the partition table with consistent.New itself, members
// named as place names them, and reports a panic as ok=false.
func oracle(t testing.TB, cfg Config, shards []Shard) (table []int32, ok bool) {
	t.Helper()
	cfg = cfg.withDefaults()
	sorted, err := sortShards(shards)
	if err != nil {
		t.Fatal(err)
	}
	members := make([]consistent.Member, len(sorted))
	for i, s := range sorted {
		members[i] = oracleMember{s.Name + string(pointSeparator), int32(i)}
	}
	defer func() {
		if recover() != nil {
			table, ok = nil, false
		}
	}()
	c := consistent.New(members, consistent.Config{
		Hasher:            cfg.Hasher,
		PartitionCount:    cfg.PartitionCount,
		ReplicationFactor: cfg.ReplicationFactor,
		Load:              cfg.Load,
	})
	table = make([]int32, cfg.PartitionCount)
	for p := range table {
		table[p] = c.GetPartitionOwner(p).(oracleMember).idx
	}
	return table, true
}

type oracleMember struct {
	key string
	idx int32
}

func (m oracleMember) String() string { return m.key }

// TestPlacementMatchesConsistent: the partition table is the one
// consistent.New builds, for every shard count the brief names.
func TestPlacementMatchesConsistent(t *testing.T) {
	configs := []Config{
		{},
		{ReplicationFactor: 20},
		{ReplicationFactor: 2, PartitionCount: 271},
		{Load: 1.05, PartitionCount: 1009},
		{Hasher: fnv1a{}, ReplicationFactor: 20},
	}
	for ci, cfg := range configs {
		for _, n := range []int{1, 2, 3, 7, 50, 200} {
			if n == 200 && (testing.Short() || cfg.withDefaults().ReplicationFactor > 20) {
				continue // consistent.New is quadratic: seconds under -race
			}
			t.Run(fmt.Sprintf("cfg%d/%d", ci, n), func(t *testing.T) {
				shards := testShards("shard-", n)
				r := mustRing(t, cfg, shards)
				want, ok := oracle(t, cfg, shards)
				if !ok {
					t.Fatal("consistent.New panicked where NewRing succeeded")
				}
				for p := range want {
					if r.table[p] != want[p] {
						t.Fatalf("partition %d: owner %d, consistent says %d", p, r.table[p], want[p])
					}
				}
				key := []byte("device-42")
				if got, want := r.partition("device-42"), int(r.cfg.Hasher.Sum64(key)%r.parts); got != want {
					t.Fatalf("partition = %d, FindPartitionID = %d", got, want)
				}
			})
		}
	}
}

// TestCapacityGuard: over a grid of small configurations, NewRing fails
// with ErrCapacity exactly where consistent.New panics, and builds the same
// table everywhere else.
func TestCapacityGuard(t *testing.T) {
	for _, load := range []float64{1.0000001, 1.01, 1.25, 2} {
		for _, rf := range []int{2, 3} {
			for p := 1; p <= 24; p++ {
				for n := 1; n <= p+3; n++ {
					cfg := Config{PartitionCount: p, ReplicationFactor: rf, Load: load}
					shards := testShards("s", n)
					r, err := NewRing(cfg, shards)
					want, ok := oracle(t, cfg, shards)
					switch {
					case ok && err != nil:
						t.Fatalf("P=%d N=%d RF=%d L=%v: NewRing: %v, consistent succeeds", p, n, rf, load, err)
					case !ok && !errors.Is(err, ErrCapacity):
						t.Fatalf("P=%d N=%d RF=%d L=%v: NewRing: %v, consistent panics", p, n, rf, load, err)
					case ok:
						for i := range want {
							if r.table[i] != want[i] {
								t.Fatalf("P=%d N=%d: partition %d differs", p, n, i)
							}
						}
					}
					if n > p && err == nil {
						t.Fatalf("P=%d N=%d: more shards than partitions accepted", p, n)
					}
				}
			}
		}
	}
}

// TestConsistentPitfalls documents the library behaviour the router
// guards against; if an upgrade fixes one, this test says so.
func TestConsistentPitfalls(t *testing.T) {
	panics := func(f func()) (p bool) {
		defer func() { p = recover() != nil }()
		f()
		return false
	}
	cfg := consistent.Config{Hasher: XXHash{}, PartitionCount: 7, ReplicationFactor: 20, Load: 1.25}
	tests := []struct {
		name string
		f    func()
	}{
		{"empty non-nil members", func() { consistent.New([]consistent.Member{}, cfg) }},
		{"more members than partitions", func() {
			m := make([]consistent.Member, 8)
			for i := range m {
				m[i] = oracleMember{key: fmt.Sprint("m", i)}
			}
			consistent.New(m, cfg)
		}},
		{"one member, one point", func() {
			c := cfg
			c.ReplicationFactor = 1
			consistent.New([]consistent.Member{oracleMember{key: "a"}}, c)
		}},
		{"nil hasher", func() { consistent.New(nil, consistent.Config{}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !panics(tt.f) {
				t.Fatal("consistent no longer panics here")
			}
		})
	}
	t.Run("ambiguous point names", func(t *testing.T) {
		// "s1"+"10" == "s11"+"0": consistent gives both shards the point.
		c := consistent.New([]consistent.Member{oracleMember{key: "s1"}, oracleMember{key: "s11"}}, cfg)
		if c.LocateKey([]byte("x")) == nil {
			t.Fatal("no owner")
		}
		a := fmt.Sprintf("%s%d", "s1", 10)
		b := fmt.Sprintf("%s%d", "s11", 0)
		if a != b {
			t.Fatalf("%q != %q: the ambiguity is gone", a, b)
		}
		// With the separator the strings differ.
		if "s1#10" == "s11#0" {
			t.Fatal("separator does not disambiguate")
		}
	})
}

// TestManyShardCounts: rings of 1 to 200 shards build, place every
// partition and respect the load cap.
func TestManyShardCounts(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 50, 200, DefaultPartitionCount} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			if testing.Short() && n > 200 {
				t.Skip("slow")
			}
			r := mustRing(t, Config{}, testShards("shard-", n))
			limit := int(maxLoad(DefaultPartitionCount, n, DefaultLoad))
			total := 0
			for name, l := range r.Loads() {
				if l > limit {
					t.Errorf("%s holds %d partitions, cap %d", name, l, limit)
				}
				total += l
			}
			if total != DefaultPartitionCount {
				t.Fatalf("%d partitions placed, want %d", total, DefaultPartitionCount)
			}
			if _, err := r.Owner("device-1"); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := NewRing(Config{}, testShards("s", DefaultPartitionCount+1)); !errors.Is(err, ErrCapacity) {
		t.Fatalf("P+1 shards: %v, want ErrCapacity", err)
	}
}
