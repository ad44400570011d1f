package server

import (
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// TestLinkHeartbeatSilentShard: a shard that authenticates and then sends
// nothing (stopped, or its host gone quiet without an RST) is detected by
// the link's read deadline with the default heartbeat settings: the links
// close, each is counted as a timeout, and a session that needs the shard
// makes the gateway dial it again (after the usual backoff).
func TestLinkHeartbeatSilentShard(t *testing.T) {
	s := startFakeShard(t, "s1", true)
	g := startGateway(t, Config{Backends: s.dir(), LinkKeys: [][]byte{fakeShardKey}})
	g.ConnectShards(map[string]string{"s1": s.addr()})
	up := time.Now()
	waitForWithin(t, 20*time.Second, "links up", func() bool { return linksUp(g) == DefaultLinksPerShard })
	waitForWithin(t, 20*time.Second, "silent links closed", func() bool {
		return metric(g, `switchyard_link_timeouts_total{shard="s1"}`) == DefaultLinksPerShard && linksUp(g) == 0
	})
	// Loose bound (a loaded box): far below what the kernel's keepalive
	// or gossip would take; the deadline itself is DefaultLinkTimeout.
	if took := time.Since(up); took > 10*time.Second {
		t.Fatalf("silent shard detected after %v", took)
	}
	if s.pings.Load() == 0 {
		t.Fatal("the gateway sent no Ping before giving up")
	}
	dialed := s.linkCount()
	hello, _ := protocol.EncodeHello(&protocol.Hello{V: 1, ID: "dev"})
	waitForWithin(t, 20*time.Second, "a new link", func() bool {
		d := dial(t, g)
		d.send(protocol.TypeHello, 0, 0, hello)
		return s.linkCount() > dialed
	})
}

// TestLinkHeartbeatHealthyIdleLink: an idle link to a shard that answers
// Pings stays up through many heartbeat periods and timeouts.
func TestLinkHeartbeatHealthyIdleLink(t *testing.T) {
	s := startFakeShard(t, "s1", false)
	// A 250 ms heartbeat, not the default 1 s, so that the wait below
	// spans many periods in seconds; the 3 s timeout lets the fake shard's
	// goroutine answer late on a loaded box. Without Pongs the links would
	// still be dropped within the wait.
	g := startGateway(t, Config{Backends: s.dir(), LinkKeys: [][]byte{fakeShardKey},
		LinkHeartbeat: 250 * time.Millisecond, LinkTimeout: 3 * time.Second})
	g.ConnectShards(map[string]string{"s1": s.addr()})
	waitForWithin(t, 20*time.Second, "links up", func() bool { return linksUp(g) == DefaultLinksPerShard })
	dialed := s.linkCount()
	// 36 Pings per link: at least 36 heartbeat periods, 3 timeouts.
	waitForWithin(t, 60*time.Second, "heartbeats", func() bool { return s.pings.Load() >= 36*DefaultLinksPerShard })
	if got := metric(g, `switchyard_link_timeouts_total{shard="s1"}`); got != 0 || linksUp(g) != DefaultLinksPerShard || s.linkCount() != dialed {
		t.Fatalf("healthy idle links dropped: %v timeouts, %d links up, %d dialed (had %d)",
			got, linksUp(g), s.linkCount(), dialed)
	}
}
