package remote

import (
	"testing"
	"time"
)

// newTestBackend is a Backend that is not started: no goroutine runs.
func newTestBackend(t *testing.T, cfg Config) *Backend {
	t.Helper()
	if cfg.Directory == nil {
		cfg.Directory = staticDir{"s1", "127.0.0.1:1"}
	}
	if cfg.Keys == nil {
		cfg.Keys = [][]byte{[]byte("remote-test-link-key-0123456789ab")}
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

type staticDir struct{ shard, addr string }

func (d staticDir) Owner(string, map[string]string) (Placement, error) {
	return Placement{Shard: d.shard, Addr: d.addr}, nil
}

// TestBringBackHoldsDown: a down shard comes back into the ring only after
// one of its links has stayed up for LinkTimeout, and never without one.
func TestBringBackHoldsDown(t *testing.T) {
	changed := 0
	r := newTestBackend(t, Config{LinkHeartbeat: 250 * time.Millisecond, LinkTimeout: time.Second, ShardsChanged: func() { changed++ }})
	now := time.Now()
	r.shards["up"] = &shardLinks{up: 1, upSince: now}
	r.shards["none"] = &shardLinks{}
	r.down["up"], r.down["none"] = true, true

	r.BringBack(now.Add(500 * time.Millisecond))
	if !r.isDown("up") || changed != 0 {
		t.Fatal("back after 500 ms of an up link; want the hold-down of LinkTimeout")
	}
	r.BringBack(now.Add(time.Second))
	if r.isDown("up") || changed != 1 {
		t.Fatalf("still down after its link stayed up for LinkTimeout (ring rebuilt %d times)", changed)
	}
	r.BringBack(now.Add(time.Hour))
	if !r.isDown("none") {
		t.Fatal("a shard with no link up came back")
	}
}

// TestDropShardForgets: a shard gossip reports gone is forgotten (no
// backoff, no longer down), but only at the address it had.
func TestDropShardForgets(t *testing.T) {
	r := newTestBackend(t, Config{})
	r.shards["s1"] = &shardLinks{addr: "a:1", links: make([]*link, 2)}
	r.down["s1"] = true
	if n := r.DropShard("s1", "b:2"); n != 0 || r.shards["s1"] == nil {
		t.Fatalf("dropped %d links of a shard at another address", n)
	}
	r.DropShard("s1", "a:1")
	if r.shards["s1"] != nil || r.AnyDown() {
		t.Fatal("shard still known after DropShard")
	}
}
