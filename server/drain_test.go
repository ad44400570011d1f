package server

import (
	"slices"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/switchyard-gw/switchyard/protocol"
)

// TestGoAwayRedirectRotated: device i is offered the redirect list rotated
// by i, so that devices spread over the other gateways.
func TestGoAwayRedirectRotated(t *testing.T) {
	targets := []string{"a:1", "b:1", "c:1"}
	for i, want := range [][]string{{"a:1", "b:1", "c:1"}, {"b:1", "c:1", "a:1"}, {"c:1", "a:1", "b:1"}, {"a:1", "b:1", "c:1"}} {
		var g protocol.GoAway
		if err := protocol.Unmarshal(goAwayPayload(200*time.Millisecond, targets, i), &g); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(g.Redirect, want) || g.RetryMS != 200 || g.Reason != "draining" {
			t.Errorf("device %d: %+v, want redirect %v", i, g, want)
		}
	}
	var g protocol.GoAway
	if err := protocol.Unmarshal(goAwayPayload(time.Second, nil, 5), &g); err != nil || len(g.Redirect) != 0 {
		t.Errorf("no targets: %+v %v", g, err)
	}
}

// TestDeviceAddr: a gateway listening on all interfaces is offered at its
// gossip address's host.
func TestDeviceAddr(t *testing.T) {
	for _, c := range []struct{ link, gossip, want string }{
		{"10.0.0.5:7400", "10.0.0.5:7946", "10.0.0.5:7400"},
		{"0.0.0.0:7400", "10.0.0.6:7946", "10.0.0.6:7400"},
		{"[::]:7400", "10.0.0.7:7946", "10.0.0.7:7400"},
		{"", "10.0.0.8:7946", ""},
	} {
		m := cluster.Member{Addr: c.gossip, Meta: cluster.Meta{Link: c.link}}
		if got := deviceAddr(m); got != c.want {
			t.Errorf("deviceAddr(link %q, gossip %q) = %q, want %q", c.link, c.gossip, got, c.want)
		}
	}
}
