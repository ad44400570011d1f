package testcluster

import (
	"context"
	"time"
)

// StopShard stops shard i gracefully: backend Close, which stops taking
// links, announces draining and leaves the gossip (cluster.Node.Leave),
// then closes its links (their sessions get 503 on the gateways and the
// devices reconnect). Bounded by DefaultStopTimeout.
func (c *Cluster) StopShard(i int) {
	c.t.Helper()
	m, ok := c.markStopped(i)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultStopTimeout)
	defer cancel()
	if err := m.srv.Close(ctx); err != nil {
		c.t.Errorf("testcluster: stop shard %s: %v", m.name, err)
	}
}

// KillShard stops shard i as abruptly as the backend API allows: Close
// with an expired context, so the links are closed at once instead of
// flushed and the queued handler calls are dropped.
//
// It is not a crash. The backend has no method that skips the leave, so
// the shard still announces draining and leaves the gossip (a crashed
// shard is declared dead by the failure detector instead), and OnClose
// still runs for its sessions. A hook that would close the listener and
// the link sockets and stop the gossip node with cluster.Node.Close
// (no Leave) is what a real crash test needs; NewProcs' KillShard
// (SIGKILL) is the real thing.
func (c *Cluster) KillShard(i int) {
	c.t.Helper()
	m, ok := c.markStopped(i)
	if !ok {
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), time.Now())
	defer cancel()
	_ = m.srv.Close(ctx) // reports the expired context
}

// DrainShard announces shard i as draining (it leaves every ring; Opens
// of sessions new to it are refused with 503) and waits until no gateway
// holds a session on it or ctx ends (backend Server.Drain). The shard
// stays up; StopShard or KillShard stops it.
func (c *Cluster) DrainShard(ctx context.Context, i int) error {
	c.mu.Lock()
	m := c.shards[i]
	if m.state == running {
		m.state = draining
	}
	c.mu.Unlock()
	return m.srv.Drain(ctx)
}

// markStopped marks shard i stopped; false when it already was.
func (c *Cluster) markStopped(i int) (*shardMember, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.shards[i]
	if m.state == stopped {
		return m, false
	}
	m.state = stopped
	return m, true
}
