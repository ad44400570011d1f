package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// lifecycle of a Node. It only moves forward.
type lifecycle uint8

const (
	stateNew lifecycle = iota
	stateRunning
	stateLeaving
	stateClosed
)

// localMeta is this node's metadata with its encoding, swapped atomically
// so that memberlist's NodeMeta callback never takes a lock.
type localMeta struct {
	meta Meta
	enc  []byte
}

// Stats are counters for metrics. EventsPending is a gauge.
type Stats struct {
	EventsPending    int    // events waiting for the Events consumer (at most one per member)
	EventsCoalesced  uint64 // events merged into a pending one because the consumer lagged
	EventsDelivered  uint64 // events received from Events
	BadMeta          uint64 // member notifications whose metadata did not decode
	MessagesReceived uint64 // user messages delivered to Messages
	MessagesDropped  uint64 // user messages dropped: Messages full, malformed or too large
}

// Node is this process's member of the Switchyard gossip cluster.
//
// Lock order: mu → mlMu; updateMu → (memberlist's locks) → view.mu.
// view.mu and msgMu are leaves: memberlist callbacks take them while
// holding memberlist's node lock, so nothing holding them calls memberlist.
type Node struct {
	cfg   Config
	log   *slog.Logger
	view  *view
	local atomic.Pointer[localMeta]

	events chan Event   // unbuffered; closed by the dispatcher (or Close)
	msgs   chan Message // buffered; closed by Close

	msgMu     sync.RWMutex // NotifyMsg sends under RLock; Close closes msgs under Lock
	msgClosed bool
	msgRecv   atomic.Uint64
	msgDrop   atomic.Uint64

	mu         sync.Mutex // lifecycle
	state      lifecycle
	ml         *memberlist.Memberlist
	keyring    *memberlist.Keyring // nil without encryption
	addr       string
	dispatched bool          // the dispatcher goroutine was started
	done       chan struct{} // closed when Close begins
	closed     chan struct{} // closed when Close has finished
	wg         sync.WaitGroup

	mlMu   sync.Mutex // serializes ml.Leave and ml.Shutdown: Leave after Shutdown panics
	mlDown bool

	updateMu sync.Mutex // serializes UpdateMeta; held across ml.UpdateNode
}

// New validates cfg and returns a Node that is not started.
func New(cfg Config) (*Node, error) {
	cfg = cfg.provision()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	enc, err := EncodeMeta(cfg.Meta)
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "cluster", "node", cfg.Name),
		events: make(chan Event),
		msgs:   make(chan Message, cfg.MessageBuffer),
		done:   make(chan struct{}),
		closed: make(chan struct{}),
	}
	n.view = newView(cfg.Name, cfg.GoneRetention, n.badMeta)
	n.local.Store(&localMeta{meta: cfg.Meta.Clone(), enc: enc})
	return n, nil
}

// Name is this member's name.
func (n *Node) Name() string { return n.cfg.Name }

// Addr is the gossip address, ip:port, that other members use to reach
// this node (the real port when Bind had port 0); "" before Start.
func (n *Node) Addr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addr
}

// Start binds the gossip port, announces Config.Meta and joins the seeds.
//
// With seeds, Start retries the join with exponential backoff
// (JoinBackoff doubling up to JoinMaxWait) until one seed answers or ctx
// ends; then it closes the node and returns an error wrapping ErrJoin, the
// last join error and ctx's error. One attempt may overrun ctx by up to
// Timing.StreamTimeout per unreachable seed. Without seeds (or with only
// this node's own address) Start returns as soon as the port is bound:
// this node is the first member of a new cluster.
func (n *Node) Start(ctx context.Context) error {
	if err := n.create(); err != nil {
		if !errors.Is(err, ErrStarted) && !errors.Is(err, ErrClosed) {
			_ = n.Close(context.Background())
		}
		return err
	}
	if err := n.join(ctx); err != nil {
		_ = n.Close(context.Background())
		return err
	}
	n.log.Info("gossip started", "addr", n.Addr(), "members", len(n.Members()))
	return nil
}

// create binds the transport and creates the memberlist.
func (n *Node) create() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch n.state {
	case stateNew:
	case stateRunning:
		return ErrStarted
	default:
		return ErrClosed
	}
	n.state = stateRunning // from here on, Close cleans up
	mc, addr, err := n.memberlistConfig()
	if err != nil {
		return err
	}
	n.dispatched = true
	n.wg.Add(1)
	go n.dispatch()
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = mc.Transport.Shutdown()
		return fmt.Errorf("cluster: start: %w", err)
	}
	n.ml, n.addr = ml, addr
	return nil
}

// memberlistConfig builds memberlist's config and binds its transport. The
// transport is created here rather than by memberlist so that the
// advertised port is always the bound one: memberlist fixes AdvertisePort
// only when BindPort is 0, and DefaultLANConfig's AdvertisePort (7946)
// would otherwise be gossiped for any other Bind port.
func (n *Node) memberlistConfig() (*memberlist.Config, string, error) {
	cfg := n.cfg
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.Label = cfg.Label
	mc.Logger = newMemberlistLogger(n.log)
	mc.Delegate = delegate{n}
	mc.Events = eventDelegate{n.view}
	// No LZW: memberlist compresses every message with a new LZW writer
	// and reader (allocations of several KB each), about a quarter of an
	// idle gateway's own CPU in a 55-gateway cluster's profile, and its
	// messages are a few hundred bytes. Members still read
	// compressed messages, so mixed versions interoperate.
	// docs/benchmarks.md "Idle cluster: gossip compression".
	mc.EnableCompression = false
	cfg.Timing.apply(mc)
	if len(cfg.Keys) > 0 {
		kr, err := newKeyring(cfg.Keys)
		if err != nil {
			return nil, "", err
		}
		mc.Keyring, n.keyring = kr, kr
	}
	bind := netip.MustParseAddrPort(cfg.Bind) // Validate checked it
	nt, err := bindTransport(bind, mc.Logger)
	if err != nil {
		return nil, "", err
	}
	port := nt.GetAutoBindPort()
	mc.Transport = nt
	mc.BindAddr, mc.BindPort = bind.Addr().String(), port
	mc.AdvertiseAddr, mc.AdvertisePort = "", port
	if cfg.Advertise != "" {
		host, aport, _ := splitAdvertise(cfg.Advertise)
		mc.AdvertiseAddr = host
		if aport != 0 {
			mc.AdvertisePort = aport
		}
	}
	ip, aport, err := nt.FinalAdvertiseAddr(mc.AdvertiseAddr, mc.AdvertisePort)
	if err != nil {
		_ = nt.Shutdown()
		return nil, "", fmt.Errorf("cluster: advertise address: %w", err)
	}
	return mc, net.JoinHostPort(ip.String(), strconv.Itoa(aport)), nil
}

// bindTransport binds TCP and UDP on the same port. With port 0 the
// kernel picks the TCP port and UDP may find it taken: retry a few times,
// as memberlist itself does.
func bindTransport(bind netip.AddrPort, logger memberlistLogger) (*memberlist.NetTransport, error) {
	tries := 1
	if bind.Port() == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var nt *memberlist.NetTransport
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{bind.Addr().String()},
			BindPort:  int(bind.Port()),
			Logger:    logger,
		})
		if err == nil {
			return nt, nil
		}
	}
	return nil, fmt.Errorf("cluster: bind %s: %w", bind, err)
}

// join contacts the seeds, retrying until one answers or ctx ends.
func (n *Node) join(ctx context.Context) error {
	seeds := n.seeds()
	if len(seeds) == 0 {
		return nil
	}
	wait := n.cfg.JoinBackoff
	for attempt := 1; ; attempt++ {
		ml, err := n.running()
		if err != nil {
			return err
		}
		k, err := ml.Join(seeds)
		if k > 0 {
			n.log.Debug("joined", "seeds_reached", k, "attempts", attempt)
			return nil
		}
		n.log.Debug("join failed", "attempt", attempt, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w after %d attempts: %s (%w)", ErrJoin, attempt, oneLine(err), ctx.Err())
		case <-n.done:
			t.Stop()
			return ErrClosed
		}
		wait = min(2*wait, n.cfg.JoinMaxWait)
	}
}

// oneLine flattens memberlist's multi-line join errors (go-multierror).
func oneLine(err error) string {
	if err == nil {
		return "no seed answered"
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// seeds returns the configured seeds with default ports, without this
// node's own address.
func (n *Node) seeds() []string {
	self := n.Addr()
	var out []string
	for _, s := range n.cfg.Seeds {
		s = withPort(s)
		if s != self && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// dispatch moves pending events to the Events channel, one at a time.
func (n *Node) dispatch() {
	defer n.wg.Done()
	defer close(n.events)
	for {
		ev, ok := n.view.pop()
		if !ok {
			select {
			case <-n.view.signal:
				continue
			case <-n.done:
				return
			}
		}
		select {
		case n.events <- ev:
			n.view.countDelivered()
		case <-n.done:
			return
		}
	}
}

// Events returns the membership events, for ONE consumer goroutine. Every
// member's changes arrive in order, this node's own included (a Join at
// Start, an Update per UpdateMeta).
//
// memberlist's callbacks never wait for the consumer: they record the
// change in a queue that holds at most one pending event per member. When
// the consumer is slow, a member's further changes replace its pending
// event with the newest state (Join+Update stays Join, anything+Leave is
// Leave, Leave+Join is Join), so the consumer sees fewer events but always
// ends on the current state; nothing grows without bound and Stats counts
// the merges. Consumers should therefore treat an event as "this is the
// member's state now", not as a delta. The channel is closed by Close;
// events still pending then are dropped.
func (n *Node) Events() <-chan Event { return n.events }

// Members returns every member this node knows, sorted by name, itself
// included: the alive ones and, for GoneRetention, those that left or
// failed (Alive false).
func (n *Node) Members() []Member {
	ms := n.view.list(true)
	for i := range ms {
		if ms[i].Name == n.cfg.Name {
			ms[i].Meta = n.Meta()
		}
	}
	return ms
}

// Member returns one member by name (gone ones included while retained).
func (n *Node) Member(name string) (Member, bool) { return n.view.get(name) }

// Self returns this node as a member, with its current metadata.
func (n *Node) Self() Member {
	m, ok := n.view.get(n.cfg.Name)
	if !ok {
		m = Member{Name: n.cfg.Name, Addr: n.Addr()}
	}
	n.mu.Lock()
	m.Alive = n.state == stateRunning || n.state == stateLeaving
	n.mu.Unlock()
	m.Meta = n.Meta()
	return m
}

// Meta returns a copy of this node's current metadata.
func (n *Node) Meta() Meta { return n.local.Load().meta.Clone() }

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	s := n.view.snapshot()
	s.MessagesReceived = n.msgRecv.Load()
	s.MessagesDropped = n.msgDrop.Load()
	return s
}

// running returns the memberlist when the node is started and not closed.
func (n *Node) running() (*memberlist.Memberlist, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch n.state {
	case stateNew:
		return nil, ErrNotStarted
	case stateClosed:
		return nil, ErrClosed
	}
	return n.ml, nil
}

// UpdateMeta changes this node's metadata: fn edits a copy, which is
// validated (size included) and then gossiped. Before Start it only
// changes what Start will announce. It waits up to UpdateTimeout for
// memberlist to finish broadcasting the change; on timeout it returns an
// error wrapping ErrBroadcastTimeout, but the change is in effect locally
// and keeps spreading (push/pull sync repairs any miss). An invalid change
// returns an error wrapping ErrInvalidMeta and changes nothing.
func (n *Node) UpdateMeta(fn func(*Meta)) error {
	return n.updateMeta(fn, n.cfg.UpdateTimeout)
}

func (n *Node) updateMeta(fn func(*Meta), timeout time.Duration) error {
	n.updateMu.Lock()
	defer n.updateMu.Unlock()
	m := n.local.Load().meta.Clone()
	fn(&m)
	if err := m.Validate(); err != nil {
		return err
	}
	enc, _ := EncodeMeta(m) // Validate encoded it already
	n.local.Store(&localMeta{meta: m, enc: enc})
	ml, err := n.running()
	if errors.Is(err, ErrNotStarted) {
		return nil
	}
	if err != nil {
		return err
	}
	// memberlist waits without limit for a timeout ≤ 0: an expired
	// deadline must still mean "do not wait".
	if err := ml.UpdateNode(max(timeout, time.Millisecond)); err != nil {
		return fmt.Errorf("%w: %v", ErrBroadcastTimeout, err)
	}
	return nil
}

// SetDraining announces StateDraining: this member takes no new sessions.
func (n *Node) SetDraining() error {
	return n.UpdateMeta(func(m *Meta) { m.State = StateDraining })
}

func (n *Node) badMeta(name string, err error) {
	n.log.Debug("undecodable member metadata", "member", name, "err", err)
}
