package testcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/server"
)

// Starvation of TestProcsStarvedGateway: the gateway runs starveRun out of
// every starveRun+starveStop, for starveFor.
const (
	starveFor  = 20 * time.Second
	starveRun  = 50 * time.Millisecond
	starveStop = 950 * time.Millisecond
)

// TestProcsStarvedGateway (issue 13): one gateway of a cluster of 2
// gateways and 3 shards (the binary, memberlist's LAN timings) gets 5 % of
// the wall clock for 20 s (SIGSTOP for 950 ms of every second: a process
// that a reconnect storm or a noisy neighbour keeps off the CPU). Its
// late acks may get it declared dead, and it may suspect the shards it
// cannot probe in time, but that must stay its own trouble: the other
// gateway's ring never changes, no shard is ever seen dead, and a device
// through the other gateway is served throughout. Once the starvation
// ends, the starved gateway is back in the other's member list and serves
// devices again. What it took is logged (docs/benchmarks.md).
func TestProcsStarvedGateway(t *testing.T) {
	p, ctx := convergedProcs(t, Options{Gateways: 2, Shards: 3, App: "counter"}, 3*poll.Patience)
	starved, other := p.Gateway(0), p.Gateway(1)
	ringLogs := gossipRingChanges(other.Log())
	dev := Dial(ctx, t, client.Config{Addr: other.Addr, ID: "starve-witness"})

	start := time.Now()
	done := make(chan int, 1)
	go func() { done <- starve(starved.PID(), start.Add(starveFor)) }()

	var (
		deadAt, aliveAt time.Duration // the other gateway's view of the starved one
		served, failed  int
		shardsDead      []string
	)
	for time.Since(start) < starveFor {
		members, err := adminMembers(ctx, other.Admin)
		if err != nil {
			t.Fatalf("members of %s: %v", other.Name, err)
		}
		for _, m := range members {
			switch {
			case m.Addr == starved.Gossip && !m.Alive && deadAt == 0:
				deadAt = time.Since(start)
			case m.Role == "backend" && !m.Alive:
				shardsDead = append(shardsDead, fmt.Sprintf("%s at %v", m.Shard, time.Since(start).Round(time.Millisecond)))
			}
		}
		if _, err := Exchange(ctx, dev, "tick"); err != nil {
			failed++
		} else {
			served++
		}
		time.Sleep(100 * time.Millisecond) // the sampling period, not a wait
	}
	if stops := <-done; stops < int(starveFor/(starveRun+starveStop))/2 {
		t.Fatalf("the gateway was seen stopped in %d duty cycles only", stops)
	}
	ended := time.Now()
	poll.Until(t, 2*poll.Patience, func() error {
		members, err := adminMembers(ctx, other.Admin)
		if err != nil {
			return err
		}
		for _, m := range members {
			if m.Addr == starved.Gossip && m.Alive {
				return nil
			}
		}
		return fmt.Errorf("%s does not see %s alive", other.Name, starved.Name)
	})
	aliveAt = time.Since(ended)
	if err := p.WaitConverged(ctx); err != nil {
		t.Error(err)
	}
	recovered := time.Since(ended)

	if n := gossipRingChanges(other.Log()) - ringLogs; n != 0 {
		t.Errorf("gossip changed the other gateway's ring %d times while a gateway starved", n)
	}
	if len(shardsDead) > 0 {
		t.Errorf("the other gateway saw shards dead: %v", shardsDead)
	}
	if failed > 0 {
		t.Errorf("device through the other gateway: %d exchanges failed, %d served", failed, served)
	}
	seen := "never seen dead"
	if deadAt > 0 {
		seen = fmt.Sprintf("seen dead by the other gateway %v into the starvation", deadAt.Round(time.Millisecond))
	}
	t.Logf("starved gateway (%v of every %v, for %v): %s; alive again %v after it ended, serving (ring converged) after %v; "+
		"its own ring changed %d times; other gateway: 0 ring changes, %d exchanges served",
		starveRun, starveRun+starveStop, starveFor, seen, aliveAt.Round(time.Millisecond), recovered.Round(time.Millisecond),
		strings.Count(starved.Log(), `msg="ring changed"`)-1, served)
}

// gossipRingChanges counts the ring changes in a gateway's log that gossip
// caused: every "ring changed" line less those that a link failover
// caused (a "shard down" or "shard back" line each; server/remote/failover.go).
// On a box loaded far beyond one starved process every process is late,
// and a link's 1 s heartbeat deadline may take a shard out of a ring for
// a moment; that is the link's verdict, not gossip flapping.
func gossipRingChanges(log string) int {
	return strings.Count(log, `msg="ring changed"`) - strings.Count(log, `msg="shard down`) - strings.Count(log, `msg="shard back`)
}

// starve stops and continues pid in a duty cycle until the deadline,
// leaves it running, and returns how many stops it saw take effect (the
// process in state T), so that the test knows its scenario happened.
func starve(pid int, until time.Time) (stopped int) {
	defer syscall.Kill(pid, syscall.SIGCONT)
	for time.Now().Before(until) {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
		if procState(pid, 'T', starveStop/2) {
			stopped++
		}
		time.Sleep(starveStop)
		_ = syscall.Kill(pid, syscall.SIGCONT)
		time.Sleep(starveRun)
	}
	return stopped
}

// procState polls /proc/pid/stat until the process is in state want, for
// at most within.
func procState(pid int, want byte, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		// pid (comm) state ...: comm may hold spaces, so look after the last ')'.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == want {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

// adminMembers reads a gateway's member list from its admin API.
func adminMembers(ctx context.Context, admin string) ([]server.MemberInfo, error) {
	rctx, cancel := context.WithTimeout(ctx, poll.Patience)
	defer cancel()
	req, _ := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+admin+"/api/v1/cluster/members", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []server.MemberInfo
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	return out, json.NewDecoder(resp.Body).Decode(&out)
}
