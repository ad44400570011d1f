package backend

import (
	"errors"
	"fmt"
	"time"

	"github.com/switchyard-gw/switchyard/cluster"
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

// Forwarding bounds.
const (
	forwardPatience   = 2 * time.Second                 // a call waits this long for its session to arrive
	forwardRetryTick  = 10 * time.Millisecond           // how often waiting calls look again
	forwardTimeout    = forwardPatience + 3*time.Second // the caller waits this long for the reply
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
	if owner.Name == g.srv.cfg.Shard {
		return g.waitHere(f)
	}
	member := ""
	for _, m := range n.Members() {
		if m.Alive && m.Meta.Role == cluster.RoleBackend && m.Meta.Shard == owner.Name {
			member = m.Name
		}
	}
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
	g.wmu.Lock()
	defer g.wmu.Unlock()
	g.nextID++
	ch := make(chan string, 1)
	g.waiting[g.nextID] = ch
	return g.nextID, ch
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
	if again && len(g.retries) < maxForwardRetries {
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
// shard's own, and retries the calls waiting for their session.
func (g *gossip) serveMessages(done <-chan struct{}) {
	t := time.NewTicker(forwardRetryTick)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
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
			default:
				g.srv.stats.dropMalformed.Add(1)
			}
		}
	}
}
