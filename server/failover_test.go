package server

import (
	"log/slog"
	"testing"
	"time"
)

// TestBringBackHoldsDown: a down shard comes back into the ring only after
// one of its links has stayed up for LinkTimeout, and never without one.
func TestBringBackHoldsDown(t *testing.T) {
	g := &Gateway{cfg: Config{LinkTimeout: time.Second}, log: slog.New(slog.DiscardHandler)}
	r := &remoteBackend{g: g, shards: map[string]*shardLinks{}, down: map[string]bool{}}
	now := time.Now()
	r.shards["up"] = &shardLinks{up: 1, upSince: now}
	r.shards["none"] = &shardLinks{}
	r.down["up"], r.down["none"] = true, true

	r.bringBack(now.Add(500 * time.Millisecond))
	if !r.isDown("up") {
		t.Fatal("back after 500 ms of an up link; want the hold-down of LinkTimeout")
	}
	r.bringBack(now.Add(time.Second))
	if r.isDown("up") {
		t.Fatal("still down after its link stayed up for LinkTimeout")
	}
	r.bringBack(now.Add(time.Hour))
	if !r.isDown("none") {
		t.Fatal("a shard with no link up came back")
	}
}
