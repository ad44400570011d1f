package router

import (
	"errors"
	"testing"
)

func TestOwnerPlacer(t *testing.T) {
	r := mustRing(t, Config{}, testShards("s", 7))
	for _, id := range deviceIDs()[:1000] {
		want, _ := r.Owner(id)
		got, err := Owner.Place(id, map[string]string{"ver": "2"}, r)
		if err != nil || got.Name != want.Name {
			t.Fatalf("%s: Place = %s, %v; owner %s", id, got.Name, err, want.Name)
		}
	}
	if _, err := Owner.Place("d", nil, nil); !errors.Is(err, ErrNoShards) {
		t.Fatalf("nil ring: %v", err)
	}
	id := deviceIDs()[3]
	if n := testing.AllocsPerRun(1000, func() { _, _ = Owner.Place(id, nil, r) }); n != 0 {
		t.Fatalf("Owner.Place allocates %v times", n)
	}
}

func TestRouterUpdate(t *testing.T) {
	canary := PlacerFunc(func(id string, tags map[string]string, r *Ring) (Shard, error) {
		if s, ok := r.Shard("s1"); ok && tags["ver"] == "canary" {
			return s, nil
		}
		return r.Owner(id)
	})
	rt, err := New(Config{}, canary)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Place("d", nil); !errors.Is(err, ErrNoShards) {
		t.Fatalf("before the first Update: %v", err)
	}
	shards := testShards("s", 3)
	members := MembershipFunc(func() []Shard { return shards })

	old, cur, changed, err := rt.Update(members)
	if err != nil || !changed || old.Len() != 0 || cur.Len() != 3 || rt.Ring() != cur {
		t.Fatalf("first Update: %v %v %v %v", old, cur, changed, err)
	}
	if _, _, changed, _ := rt.Update(members); changed {
		t.Fatal("same shards reported as a change")
	}
	if s, _ := rt.Place("any", map[string]string{"ver": "canary"}); s.Name != "s1" {
		t.Fatalf("placer not used: %s", s.Name)
	}

	shards = append(shards, Shard{Name: "s1"}) // duplicate: refused
	if _, kept, changed, err := rt.Update(members); !errors.Is(err, ErrDuplicateShard) || changed || kept != cur || rt.Ring() != cur {
		t.Fatalf("bad update must keep the ring: %v", err)
	}
	shards = testShards("s", 4)
	if old, next, changed, err := rt.Update(members); err != nil || !changed || old != cur || next.Len() != 4 {
		t.Fatalf("grow: %v %v", changed, err)
	}
	if _, err := New(Config{Load: 1}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New with a bad config: %v", err)
	}
}
