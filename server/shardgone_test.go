package server

import (
	"context"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/switchyard-gw/switchyard/protocol"
)

var testGossipKey = []byte("server-test-gossip-key-0123456789")[:32]

// gossipShard announces a backend shard named name, whose link listener
// is at link, on a gossip node of its own.
func gossipShard(t *testing.T, name, link string) *cluster.Node {
	t.Helper()
	n, err := cluster.New(cluster.Config{Name: "be-" + name, Bind: "127.0.0.1:0", Keys: [][]byte{testGossipKey},
		Timing: cluster.FastTiming(), Meta: cluster.Meta{Role: cluster.RoleBackend, Shard: name, Link: link, State: cluster.StateActive}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close(context.Background()) })
	return n
}

// TestShardGoneDropsLinks: when gossip reports a shard gone (a graceful
// leave, or a failure: the node stops answering) while its link listener
// still holds the links open, the gateway closes them, counts it, fails
// the shard's devices with 503 and does not dial the shard again.
func TestShardGoneDropsLinks(t *testing.T) {
	tests := []struct {
		name string
		gone func(*cluster.Node)
	}{
		{"left", func(n *cluster.Node) { _ = n.Leave(context.Background()) }},
		{"failed", func(n *cluster.Node) { _ = n.Close(context.Background()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startFakeShard(t, "s1", false)
			be := gossipShard(t, "s1", s.addr())
			g := startGateway(t, Config{Node: "gw-" + tt.name, LinkKeys: [][]byte{fakeShardKey},
				Cluster: &ClusterConfig{Name: "gw-" + tt.name, Bind: "127.0.0.1:0", Seeds: []string{be.Addr()},
					Keys: [][]byte{testGossipKey}, Timing: cluster.FastTiming()}})
			waitForWithin(t, 20*time.Second, "links to the shard", func() bool { return linksUp(g) == DefaultLinksPerShard })

			d := dial(t, g)
			hello, _ := protocol.EncodeHello(&protocol.Hello{V: 1, ID: "dev"})
			d.send(protocol.TypeHello, 0, 0, hello)
			open := s.next(t, protocol.LinkOpen)
			open.l.opened(open.e.Session)
			if f := d.read(); f.Type != protocol.TypeWelcome {
				t.Fatalf("want WELCOME, got %v %s", f.Type, errText(f))
			}
			dialed := s.linkCount()

			tt.gone(be)
			waitForWithin(t, 20*time.Second, "links closed", func() bool { return linksUp(g) == 0 })
			d.expectError(protocol.CodeUnavailable, true)
			if got := metric(g, `switchyard_link_shard_gone_total{shard="s1"}`); got != DefaultLinksPerShard {
				t.Fatalf("switchyard_link_shard_gone_total = %v, want %d", got, DefaultLinksPerShard)
			}
			// That the shard's links entry is gone is TestDropShardForgets
			// (server/remote); here: out of the ring, and never dialed again.
			if g.Shards() != 0 {
				t.Fatalf("shard still in the ring: %d shards", g.Shards())
			}
			d2 := dial(t, g)
			d2.send(protocol.TypeHello, 0, 0, hello)
			d2.expectError(protocol.CodeUnavailable, true)
			if n := s.linkCount(); n != dialed {
				t.Fatalf("the gateway dialed the gone shard again: %d links, had %d", n, dialed)
			}
		})
	}
}
