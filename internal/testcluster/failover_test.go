package testcluster

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/router"
)

// TestProcsSilentShardFailover (issue 7, shard crash): a shard that goes
// silent (SIGSTOP: no RST, no FIN, gossip still lists it for seconds) is
// taken out of the gateway's ring once its links' heartbeats time out, so
// a device placed on it is served by the other shard without waiting for
// gossip; when it runs again, a link authenticates, the shard is back in
// the ring and serves its devices again.
func TestProcsSilentShardFailover(t *testing.T) {
	p, ctx := convergedProcs(t, Options{Gateways: 1, Shards: 2, App: "counter"}, 3*poll.Patience)
	gw := p.Gateway(0)
	victim, survivor := p.Shard(1), p.Shard(0).Name
	owned := ownedBy(p.Ring(), "silent", victim.Name)

	stopped := time.Now()
	if err := syscall.Kill(victim.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(victim.PID(), syscall.SIGCONT)
		}
	}
	defer resume()
	poll.Until(t, poll.Patience, func() error {
		if !strings.Contains(gw.Log(), `msg="shard down`) {
			return fmt.Errorf("the gateway has not taken %s down", victim.Name)
		}
		return nil
	})
	down := time.Since(stopped)
	d := Dial(ctx, t, client.Config{Addr: gw.Addr, ID: owned})
	if got := served(ctx, t, d); got != survivor {
		t.Fatalf("%s (owned by the silent %s) served by %s, want %s", owned, victim.Name, got, survivor)
	}
	t.Logf("silent shard out of the ring %v after SIGSTOP, its device served by %s %v after",
		down.Round(time.Millisecond), survivor, time.Since(stopped).Round(time.Millisecond))

	resume()
	if err := p.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, poll.Patience, func() error {
		reply, err := Exchange(ctx, d, "tick")
		if err != nil {
			return err
		}
		if shard, _, _ := CounterReply(reply); shard != victim.Name {
			return fmt.Errorf("%s served by %s after %s came back", owned, shard, victim.Name)
		}
		return nil
	})
}

// ownedBy returns a device id with prefix that ring places on shard.
func ownedBy(ring *router.Ring, prefix, shard string) string {
	for i := 0; ; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		if s, _ := ring.Owner(id); s.Name == shard {
			return id
		}
	}
}
