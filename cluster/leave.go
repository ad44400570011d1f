package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Leave leaves the cluster gracefully, then closes the node:
//
//  1. announce StateDraining in the metadata and wait (UpdateNode) until
//     memberlist has finished gossiping it, because the others cannot
//     tell a leave from a crash: they see the draining state first, and
//     the Leave event that follows carries it as the last metadata;
//  2. memberlist Leave: broadcast the leave and wait until it went out;
//  3. Close (memberlist Shutdown, our goroutines).
//
// Steps 1 and 2 share ctx's deadline (LeaveTimeout if it has none), half
// each at most for step 1; a timeout in either is reported but the node is
// closed regardless. Leave on a node never started just closes it.
func (n *Node) Leave(ctx context.Context) error {
	n.mu.Lock()
	state := n.state
	if state == stateRunning {
		n.state = stateLeaving
	}
	n.mu.Unlock()
	switch state {
	case stateNew:
		return n.Close(ctx)
	case stateLeaving, stateClosed:
		return ErrClosed
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.LeaveTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	var errs []error
	err := n.updateMeta(func(m *Meta) { m.State = StateDraining }, time.Until(deadline)/2)
	if err != nil {
		errs = append(errs, fmt.Errorf("announce draining: %w", err))
	}
	if err := n.leaveGossip(time.Until(deadline)); err != nil {
		errs = append(errs, err)
	}
	if err := n.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cluster: leave: %w", err)
	}
	n.log.Info("left the cluster")
	return nil
}

// leaveGossip is memberlist's Leave, unless Close already shut it down
// (memberlist panics on Leave after Shutdown).
func (n *Node) leaveGossip(timeout time.Duration) error {
	n.mlMu.Lock()
	defer n.mlMu.Unlock()
	if n.mlDown || n.ml == nil {
		return ErrClosed
	}
	if timeout <= 0 {
		timeout = time.Millisecond
	}
	return n.ml.Leave(timeout)
}

// Close stops the node without a graceful leave (the others see a
// failure; call Leave for a graceful exit): memberlist is shut down, the
// Events channel is closed with whatever was pending, Messages is closed,
// and Close waits for every goroutine the node started. It does not wait
// on the network, so ctx bounds nothing today. Close is idempotent; later
// calls wait for the first to finish.
//
// memberlist itself may keep a few goroutines for a moment after Shutdown
// (in-flight stream handlers, probe helpers, timers); they exit on their
// own within Timing.StreamTimeout and never call back into a closed Node
// in a harmful way: late notifications land in the dead view and late
// messages are dropped.
func (n *Node) Close(ctx context.Context) error {
	_ = ctx
	n.mu.Lock()
	if n.state == stateClosed {
		n.mu.Unlock()
		<-n.closed
		return nil
	}
	n.state = stateClosed
	close(n.done)
	dispatched := n.dispatched
	n.mu.Unlock()

	n.mlMu.Lock()
	if n.ml != nil && !n.mlDown {
		n.mlDown = true
		if err := n.ml.Shutdown(); err != nil {
			n.log.Debug("memberlist shutdown", "err", err)
		}
	}
	n.mlMu.Unlock()

	n.wg.Wait()
	if !dispatched {
		close(n.events)
	}
	n.msgMu.Lock()
	n.msgClosed = true
	close(n.msgs)
	n.msgMu.Unlock()
	close(n.closed)
	return nil
}
