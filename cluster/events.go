package cluster

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// EventKind says what happened to a member.
type EventKind uint8

// Event kinds.
const (
	// EventJoin: the member is alive and was not before (first seen, or
	// back after it was gone).
	EventJoin EventKind = iota + 1
	// EventUpdate: an alive member changed its metadata.
	EventUpdate
	// EventLeave: the member is gone, by a graceful leave or a failure;
	// gossip does not say which, so a leaving member announces
	// StateDraining first and Event.Member.Meta holds its last metadata.
	EventLeave
)

func (k EventKind) String() string {
	switch k {
	case EventJoin:
		return "join"
	case EventUpdate:
		return "update"
	case EventLeave:
		return "leave"
	}
	return "event(" + strconv.Itoa(int(k)) + ")"
}

// Member is one member of the cluster as this node sees it.
type Member struct {
	// Name is the member's unique name.
	Name string
	// Addr is its gossip address, host:port.
	Addr string
	// Meta is its decoded metadata; zero when it sent none or garbage
	// (Role is then 0, which no consumer routes to).
	Meta Meta
	// Alive is false once the member left or failed.
	Alive bool
	// Since is when this node saw the member's last change.
	Since time.Time
}

// Event is a change of one member. It always carries the member's newest
// state: when the consumer lags, several changes collapse into one event
// (see Node.Events).
type Event struct {
	Kind   EventKind
	Member Member
}

// view is the membership table and the pending-event queue. memberlist's
// EventDelegate callbacks write it while holding memberlist's node lock,
// so view never calls memberlist and never blocks: its mutex is a leaf.
//
// Coalescing: at most one pending event per member name. A new event for
// a member that already has one replaces it in place (same position in
// the queue) with the newest state; the kind becomes the new kind, except
// that a pending Join stays Join when an Update follows. The queue is
// therefore bounded by the number of members, whatever the consumer does.
type view struct {
	self      string
	retention time.Duration
	onBadMeta func(name string, err error)

	mu        sync.Mutex
	members   map[string]*Member
	queue     []*Event          // FIFO of pending events
	pending   map[string]*Event // name → its pending event in queue
	signal    chan struct{}     // 1-buffered: queue became non-empty
	stats     Stats
	lastPrune time.Time
}

func newView(self string, retention time.Duration, onBadMeta func(string, error)) *view {
	return &view{
		self:      self,
		retention: retention,
		onBadMeta: onBadMeta,
		members:   make(map[string]*Member),
		pending:   make(map[string]*Event),
		signal:    make(chan struct{}, 1),
	}
}

// eventDelegate adapts view to memberlist.EventDelegate.
type eventDelegate struct{ v *view }

var _ memberlist.EventDelegate = eventDelegate{}

func (d eventDelegate) NotifyJoin(n *memberlist.Node)   { d.v.apply(EventJoin, n) }
func (d eventDelegate) NotifyUpdate(n *memberlist.Node) { d.v.apply(EventUpdate, n) }
func (d eventDelegate) NotifyLeave(n *memberlist.Node)  { d.v.apply(EventLeave, n) }

// apply records a memberlist notification. It decodes the metadata once,
// here, so that Members and every event share the result.
func (v *view) apply(kind EventKind, n *memberlist.Node) {
	meta, err := DecodeMeta(n.Meta)
	if err != nil && v.onBadMeta != nil {
		v.onBadMeta(n.Name, err)
	}
	now := time.Now()
	m := Member{
		Name:  n.Name,
		Addr:  net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))),
		Meta:  meta,
		Alive: kind != EventLeave,
		Since: now,
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if err != nil {
		v.stats.BadMeta++
	}
	v.members[m.Name] = &m
	v.enqueue(kind, m)
	v.prune(now)
}

// enqueue adds or coalesces the event for m. Caller holds v.mu.
func (v *view) enqueue(kind EventKind, m Member) {
	if ev, ok := v.pending[m.Name]; ok {
		if !(ev.Kind == EventJoin && kind == EventUpdate) {
			ev.Kind = kind
		}
		ev.Member = m
		v.stats.EventsCoalesced++
		return
	}
	ev := &Event{Kind: kind, Member: m}
	v.queue = append(v.queue, ev)
	v.pending[m.Name] = ev
	v.stats.EventsPending = len(v.queue)
	select {
	case v.signal <- struct{}{}:
	default:
	}
}

// pop removes the oldest pending event.
func (v *view) pop() (Event, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.queue) == 0 {
		return Event{}, false
	}
	ev := v.queue[0]
	v.queue[0] = nil
	v.queue = v.queue[1:]
	if len(v.queue) == 0 {
		v.queue = nil // let the backing array go
	}
	delete(v.pending, ev.Member.Name)
	v.stats.EventsPending = len(v.queue)
	out := *ev
	out.Member.Meta = out.Member.Meta.Clone() // the table keeps the original
	return out, true
}

// prune forgets members gone for longer than the retention, at most once
// a second. Caller holds v.mu.
func (v *view) prune(now time.Time) {
	if now.Sub(v.lastPrune) < time.Second {
		return
	}
	v.lastPrune = now
	for name, m := range v.members {
		if !m.Alive && now.Sub(m.Since) > v.retention {
			delete(v.members, name)
		}
	}
}

// list returns the members sorted by name; gone ones only with all.
func (v *view) list(all bool) []Member {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.prune(time.Now())
	out := make([]Member, 0, len(v.members))
	for _, m := range v.members {
		if all || m.Alive {
			c := *m
			c.Meta = c.Meta.Clone()
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// get returns one member (gone ones included).
func (v *view) get(name string) (Member, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	m, ok := v.members[name]
	if !ok {
		return Member{}, false
	}
	c := *m
	c.Meta = c.Meta.Clone()
	return c, true
}

func (v *view) countDelivered() {
	v.mu.Lock()
	v.stats.EventsDelivered++
	v.mu.Unlock()
}

func (v *view) snapshot() Stats {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.stats
}

// ActiveShards returns the alive backend members that take new sessions
// (state active, with a shard name and a link address), one per shard
// name, sorted by shard name. When two members claim one shard — a shard
// restarted before its previous life was declared dead — the one seen
// changing last wins, so the ring never holds a shard twice.
func (n *Node) ActiveShards() []Member {
	byShard := map[string]Member{}
	for _, m := range n.Members() {
		if !m.Alive || m.Meta.Role != RoleBackend || m.Meta.State != StateActive || m.Meta.Shard == "" || m.Meta.Link == "" {
			continue
		}
		if old, ok := byShard[m.Meta.Shard]; !ok || m.Since.After(old.Since) {
			byShard[m.Meta.Shard] = m
		}
	}
	out := make([]Member, 0, len(byShard))
	for _, m := range byShard {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Meta.Shard, b.Meta.Shard) })
	return out
}
