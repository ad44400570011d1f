package backend

import (
	"errors"
	"fmt"
	"time"

	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/switchyard-gw/switchyard/internal/trace"
	"github.com/vmihailenco/msgpack/v5"
)

// Forwarding Push and Kick to the shard that holds a device's session.
//
// A session lives on the shard the ring names for its device, except
// while the gateways move it there after a shard drained or joined (about
// a second for 10,000 sessions at the gateways' default move rate). So a
// call for a device that is not here goes to the ring's owner as a
// cluster message; the owner delivers it when the session is there, and
// otherwise retries every forwardRetryTick until the session arrives or
// forwardPatience passed. Either way it replies, and the caller's Push or
// Kick returns the result: a call is never dropped without its caller
// seeing an error (ErrForwardTimeout when no reply came).
//
//	caller ──Push──▶ not here ──msg{push, id}──▶ ring owner: deliver, or retry until the session arrives
//	       ◀─error or nil──────── msg{reply, id} ◀──┘
//
// The retries wait in a list served by the gossip's message goroutine
// (no goroutine or timer per call), bounded by maxForwardRetries.
//
// Canary rules (docs/operations.md "Canary roll-out") place some devices
// elsewhere: a device a rule selects lives on one of the shards carrying
// the rule's labels, and a device no rule selects whose ring owner is such
// a shard lives on its owner among the other shards. The rules are the
// gateways' configuration; a shard does not know them. So when the ring
// holds labelled shards, a call first probes, all at once, every shard
// the device can be on under any rules that target labelled shards: the
// labelled shards, the ring owner, and the owner among the unlabelled
// shards (probeTargets). A probe is delivered at once or answered "not
// here", never retried; the shard that holds the live session answers
// with its result, and the call ends there. When no probe finds the
// session (it is moving, or not connected), the call goes to the ring
// owner and waits there as above. Without labelled shards there is no
// probe: placement is the ring's.
//
// At most one shard holds a device's session live, so a call is delivered
// once. Two corner cases: a probe answered after probeTimeout may have
// delivered although the call goes on to the ring owner (which delivers
// only if the session moved there meanwhile; otherwise the caller sees
// ErrNotConnected for a delivered call, as with ErrForwardTimeout); and a
// shard older than probes ignores the flag and keeps the call waiting for
// the session like any forwarded call, so during a rolling upgrade of the
// shards a call may be delivered late rather than answered "not here".
//
//	caller ──probe{push, id1..n}──▶ each candidate: deliver now, or reply "not here"
//	       ◀── first delivery (or the session's error) ends the call; all "not here": the ring owner as above

// Forwarding bounds.
const (
	forwardPatience   = 2 * time.Second                 // a call waits this long for its session to arrive
	forwardRetryTick  = 10 * time.Millisecond           // how often waiting calls look again
	forwardTimeout    = forwardPatience + 3*time.Second // the caller waits this long for the reply
	probeTimeout      = time.Second                     // the caller waits this long for the probes' replies
	maxForwardRetries = 4096                            // calls waiting for their session; beyond, answered at once
)

// forward kinds.
const (
	forwardPush  = "push"
	forwardKick  = "kick"
	forwardReply = "reply"
	forwardDrain = "drain" // cluster.DrainRequest: a gateway asks this shard to drain (no reply)
)

// ErrForwardTimeout: a forwarded Push or Kick got no reply in time; it
// may or may not have been delivered.
var ErrForwardTimeout = errors.New("backend: no reply from the owning shard")

// forward is a Push or Kick sent to the owning shard, or its reply.
type forward struct {
	Kind     string `msgpack:"k"` // push, kick or reply
	ID       uint64 `msgpack:"i,omitempty"`
	Device   string `msgpack:"d,omitempty"`
	Payload  []byte `msgpack:"p,omitempty"`
	Reliable bool   `msgpack:"r,omitempty"`
	Code     int    `msgpack:"c,omitempty"`
	Reason   string `msgpack:"m,omitempty"` // kick reason; a reply's error ("" = done)
	Probe    bool   `msgpack:"q,omitempty"` // deliver now or answer "not here"; never wait for the session
}

// retry is a forwarded call waiting for its session.
type retry struct {
	f     forward
	from  string
	until time.Time
}

// deliver runs f on the session of its device here; again when the
// session is not here (yet), or was fenced by a move meanwhile.
func (srv *Server) deliver(f *forward) (err error, again bool) {
	s := srv.local(f.Device)
	if s == nil {
		return ErrNotConnected, true
	}
	if f.Kind == forwardKick {
		err = s.Kick(f.Code, f.Reason)
	} else {
		err = s.Send(f.Payload, f.Reliable)
	}
	return err, errors.Is(err, ErrSessionMoved)
}

func (g *gossip) Push(deviceID string, payload []byte, reliable bool) error {
	return g.call(&forward{Kind: forwardPush, Device: deviceID, Payload: payload, Reliable: reliable})
}

func (g *gossip) Kick(deviceID string, code int, reason string) error {
	return g.call(&forward{Kind: forwardKick, Device: deviceID, Code: code, Reason: reason})
}

// call hands f to the shard the ring names for its device and returns
// its reply; when that is this shard, it waits here for the session.
func (g *gossip) call(f *forward) error {
	g.mu.Lock()
	n := g.node
	g.mu.Unlock()
	if n == nil {
		return ErrNotOwner
	}
	owner, err := g.r.Place(f.Device, nil)
	if err != nil {
		return fmt.Errorf("backend: forward to %s: %w", f.Device, err)
	}
	if found, err := g.probe(n, f); found {
		return err
	}
	if owner.Name == g.srv.cfg.Shard {
		return g.waitHere(f)
	}
	member := memberOf(n, owner.Name)
	if member == "" {
		return fmt.Errorf("backend: forward to %s: shard %s: %w", f.Device, owner.Name, ErrNotOwner)
	}
	id, ch := g.await()
	defer g.forget(id)
	f.ID = id
	p, err := msgpack.Marshal(f)
	if err != nil {
		return err
	}
	if err := n.SendTo(member, p); err != nil {
		return fmt.Errorf("backend: forward to %s: %w", f.Device, err)
	}
	t := time.NewTimer(forwardTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return replyError(r)
	case <-t.C:
		return fmt.Errorf("backend: forward to %s via %s: %w", f.Device, owner.Name, ErrForwardTimeout)
	}
}

// memberOf returns the gossip member name of the live shard called
// shard ("" when none).
func memberOf(n *cluster.Node, shard string) string {
	member := ""
	for _, m := range n.Members() {
		if m.Alive && m.Meta.Role == cluster.RoleBackend && m.Meta.Shard == shard {
			member = m.Name
		}
	}
	return member
}

// probe asks every shard but this one that may hold f's device under
// canary rules (probeTargets) to deliver f now. found: one of them held
// the session, and err is its result; otherwise no probe target holds it
// live (or none answered within probeTimeout).
func (g *gossip) probe(n *cluster.Node, f *forward) (found bool, err error) {
	targets := probeTargets(g.r.Ring(), g.unlabelled(), f.Device, g.srv.cfg.Shard)
	if len(targets) == 0 {
		return false, nil
	}
	replies := make(chan string, len(targets)) // one reply per probe: replied never blocks
	sent := 0
	for _, shard := range targets {
		member := memberOf(n, shard)
		if member == "" {
			continue
		}
		id := g.awaitOn(replies)
		defer g.forget(id)
		pf := *f
		pf.ID, pf.Probe = id, true
		p, err := msgpack.Marshal(&pf)
		if err != nil || n.SendTo(member, p) != nil {
			continue
		}
		sent++
	}
	t := time.NewTimer(probeTimeout)
	defer t.Stop()
	for range sent {
		select {
		case r := <-replies:
			if err := replyError(r); !errors.Is(err, ErrNotConnected) && !errors.Is(err, ErrSessionMoved) {
				return true, err
			}
		case <-t.C:
			return false, nil
		}
	}
	return false, nil
}

// waitHere delivers f on this shard, waiting up to forwardPatience for
// the session to arrive (the ring names this shard; a gateway is moving
// the session here).
func (g *gossip) waitHere(f *forward) error {
	deadline := time.Now().Add(forwardPatience)
	t := time.NewTicker(forwardRetryTick)
	defer t.Stop()
	for {
		err, again := g.srv.deliver(f)
		if !again || time.Now().After(deadline) {
			return err
		}
		select {
		case <-g.srv.quit:
			return ErrClosed
		case <-t.C:
		}
	}
}

// await registers a call waiting for its reply.
func (g *gossip) await() (uint64, chan string) {
	ch := make(chan string, 1)
	return g.awaitOn(ch), ch
}

// awaitOn registers a call whose reply goes to ch, which must have room
// for it (replied drops a reply that finds ch full).
func (g *gossip) awaitOn(ch chan string) uint64 {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	g.nextID++
	g.waiting[g.nextID] = ch
	return g.nextID
}

func (g *gossip) forget(id uint64) {
	g.wmu.Lock()
	delete(g.waiting, id)
	g.wmu.Unlock()
}

// replied hands a reply to its waiting call (none when it timed out).
func (g *gossip) replied(id uint64, text string) {
	g.wmu.Lock()
	ch := g.waiting[id]
	g.wmu.Unlock()
	if ch != nil {
		select {
		case ch <- text:
		default:
		}
	}
}

// replyError turns a reply's text back into the error it stands for.
func replyError(text string) error {
	for _, known := range []error{ErrNotConnected, ErrSessionMoved, ErrDetached, ErrOutboxFull,
		ErrLinkQueueFull, ErrSessionClosed, ErrTooLarge} {
		if text == known.Error() {
			return known
		}
	}
	if text == "" {
		return nil
	}
	return errors.New("backend: forwarded call failed: " + text)
}

// onForward handles a forwarded call from member from: delivered (or
// failed) now and answered, or kept for retries while its session is not
// here.
func (g *gossip) onForward(f *forward, from string, now time.Time) {
	err, again := g.srv.deliver(f)
	if again && !f.Probe && len(g.retries) < maxForwardRetries {
		g.retries = append(g.retries, retry{f: *f, from: from, until: now.Add(forwardPatience)})
		return
	}
	g.reply(from, f.ID, err)
}

// retryForwards looks again for the sessions of the waiting calls.
func (g *gossip) retryForwards(now time.Time) {
	kept := g.retries[:0]
	for _, r := range g.retries {
		err, again := g.srv.deliver(&r.f)
		if again && now.Before(r.until) {
			kept = append(kept, r)
			continue
		}
		if again {
			g.srv.stats.forwardUndelivered.Add(1)
			g.srv.log.Warn("forwarded call undelivered: the session did not arrive", "device", r.f.Device,
				"kind", r.f.Kind, "from", r.from)
		}
		g.reply(r.from, r.f.ID, err)
	}
	clear(g.retries[len(kept):])
	g.retries = kept
}

// reply answers a forwarded call (calls without an id, from older shards,
// get no reply).
func (g *gossip) reply(to string, id uint64, err error) {
	if id == 0 {
		return
	}
	text := ""
	if err != nil {
		text = err.Error()
	}
	p, merr := msgpack.Marshal(&forward{Kind: forwardReply, ID: id, Reason: text})
	if merr != nil {
		return
	}
	g.mu.Lock()
	n := g.node
	g.mu.Unlock()
	if n != nil {
		if err := n.SendTo(to, p); err != nil {
			g.srv.log.Warn("forward reply not sent", "to", to, "err", err)
		}
	}
}

// serveMessages handles the forwarded calls and the replies to this
// shard's own, and retries the calls waiting for their session. Its retry
// timer runs only while calls wait (g.retries is this goroutine's), so an
// idle shard does not wake 100 times a second.
func (g *gossip) serveMessages(done <-chan struct{}) {
	t := time.NewTimer(forwardRetryTick)
	defer t.Stop()
	armed := true
	for {
		if !armed && len(g.retries) > 0 {
			t.Reset(forwardRetryTick)
			armed = true
		}
		select {
		case <-done:
			return
		case now := <-t.C:
			armed = false
			if len(g.retries) > 0 {
				g.retryForwards(now)
			}
		case m, ok := <-g.node.Messages():
			if !ok {
				return
			}
			var f forward
			if msgpack.Unmarshal(m.Payload, &f) != nil {
				g.srv.stats.dropMalformed.Add(1)
				continue
			}
			switch f.Kind {
			case forwardReply:
				g.replied(f.ID, f.Reason)
			case forwardPush, forwardKick:
				g.onForward(&f, m.From, time.Now())
			case forwardDrain:
				g.srv.requestDrain(m.From)
			case trace.Kind:
				g.srv.startTrace(m.Payload, m.From)
			default:
				g.srv.stats.dropMalformed.Add(1)
			}
		}
	}
}
