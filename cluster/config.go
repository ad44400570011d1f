package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// Defaults. Every Config field left at its zero value takes one of these.
const (
	DefaultPort          = 7946                   // gossip port (TCP and UDP) when an address has none
	DefaultBind          = "127.0.0.1:7946"       // loopback: a zero config never gossips on the network
	DefaultLabel         = "switchyard"           // keeps other memberlist clusters (Consul, ...) out
	DefaultUpdateTimeout = 5 * time.Second        // UpdateMeta waits this long for its broadcast
	DefaultLeaveTimeout  = 5 * time.Second        // Leave without a context deadline takes at most this
	DefaultJoinBackoff   = 250 * time.Millisecond // first pause between join attempts
	DefaultJoinMaxWait   = 5 * time.Second        // longest pause between join attempts
	DefaultMessageBuffer = 1024                   // received user messages waiting for Messages()
	DefaultMaxMessage    = 1 << 20                // largest user message SendTo accepts
	DefaultGoneRetention = time.Minute            // a gone member stays in Members() this long
)

// maxNameLen bounds member names: user messages carry the sender's name
// behind a one-byte length.
const maxNameLen = 255

// Config configures a Node. The zero value is a single node on
// DefaultBind without encryption (allowed because it is loopback) whose
// Meta still has to be set: Meta.Role is required.
type Config struct {
	// Name is this member's unique name in the cluster, at most 255 bytes.
	// Default: the host
	// name plus a random suffix, so that a restarted process never
	// collides with the dead entry of its previous life (memberlist
	// refuses a known name at a new address).
	Name string
	// Bind is the gossip address, host:port, for both TCP and UDP; port 0
	// picks a free port and Addr reports it. Default DefaultBind.
	Bind string
	// Advertise is the address other members use to reach this one, when
	// it differs from Bind (NAT, or Bind on 0.0.0.0 with several private
	// addresses). host or host:port; without a port the bound port is used.
	Advertise string
	// Seeds are host:port addresses of members to join (port DefaultPort
	// if left out). Empty: this node starts a new cluster. This node's own
	// address is skipped, so every member may share one seed list.
	Seeds []string
	// Keys is the gossip encryption keyring (AES-GCM; each key 16, 24 or
	// 32 bytes). Keys[0] encrypts; every key decrypts. To rotate: add the
	// new key as Keys[1] on every node, then make it Keys[0] everywhere,
	// then drop the old one. Empty: no encryption, which Validate accepts
	// only with a loopback Bind or Insecure set.
	Keys [][]byte
	// Insecure allows gossip without encryption on a non-loopback Bind.
	Insecure bool
	// Label is the memberlist cluster label, sent in clear before every
	// packet and stream (and authenticated when encrypted); packets with
	// another label are dropped. Default DefaultLabel. At most 255 bytes.
	Label string
	// Timing tunes failure detection and gossip; zero fields keep
	// memberlist's LAN defaults. FastTiming is a preset for tests.
	Timing Timing
	// Meta is the metadata announced at Start; change it later with
	// UpdateMeta. Role is required.
	Meta Meta
	// UpdateTimeout bounds how long UpdateMeta waits for its broadcast.
	// Default DefaultUpdateTimeout.
	UpdateTimeout time.Duration
	// LeaveTimeout bounds Leave when its context has no deadline.
	// Default DefaultLeaveTimeout.
	LeaveTimeout time.Duration
	// JoinBackoff is the first pause between join attempts; it doubles up
	// to JoinMaxWait. Defaults DefaultJoinBackoff and DefaultJoinMaxWait.
	JoinBackoff time.Duration
	JoinMaxWait time.Duration
	// MessageBuffer is how many received user messages wait for the
	// Messages channel; beyond it new ones are dropped and counted.
	// Default DefaultMessageBuffer.
	MessageBuffer int
	// MaxMessage is the largest user message SendTo sends and the largest
	// one delivered. Default DefaultMaxMessage.
	MaxMessage int
	// GoneRetention is how long a member that left or failed stays in
	// Members (with Alive false). Default DefaultGoneRetention.
	GoneRetention time.Duration
	// Logger receives the node's logs, and memberlist's own at debug
	// level; nil discards them.
	Logger *slog.Logger
}

// Timing holds the memberlist timings that matter; a zero field keeps the
// value of memberlist.DefaultLANConfig (shown in brackets).
type Timing struct {
	// ProbeInterval is the time between failure-detector probes [1s].
	ProbeInterval time.Duration
	// ProbeTimeout is how long a probe waits for an ack; about the 99th
	// percentile round trip [500ms].
	ProbeTimeout time.Duration
	// GossipInterval is the time between gossip rounds [200ms].
	GossipInterval time.Duration
	// SuspicionMult scales how long a suspect has to refute before it is
	// declared dead: SuspicionMult × log10(N+1) × ProbeInterval [4].
	SuspicionMult int
	// PushPullInterval is the time between full state syncs [30s].
	PushPullInterval time.Duration
	// StreamTimeout bounds TCP dials and reads (join, push/pull, SendTo)
	// [10s].
	StreamTimeout time.Duration
}

// FastTiming is a preset for tests and loopback clusters: a killed member
// is declared dead by all in about 1–3 s instead of memberlist's 5–25 s,
// and joins and updates spread in well under a second. Too tight for a
// real network.
//
// It keeps memberlist's own safety margin against false deaths, which an
// earlier, tighter preset gave up (100 ms probes, 50 ms probe timeout,
// SuspicionMult 2): with SuspicionMult 2 memberlist expects no independent
// confirmation of a suspicion (it wants SuspicionMult−2), so one prober
// whose acks were late declared a healthy member dead after the bare
// minimum, 2 × log10(N+1) × ProbeInterval ≈ 210 ms at 10 members. In a
// CPU-starved test process every member's acks are late, the deaths and
// refutations never settled, and a 10-member cluster did not converge in
// 15 s beside three busy loops (issue 13). With SuspicionMult 4 a death
// needs two confirmations or the longer timeout, and a 250 ms probe
// timeout absorbs scheduling delays of a loaded box.
func FastTiming() Timing {
	return Timing{
		ProbeInterval:    500 * time.Millisecond,
		ProbeTimeout:     250 * time.Millisecond,
		GossipInterval:   50 * time.Millisecond,
		SuspicionMult:    4,
		PushPullInterval: time.Second,
		StreamTimeout:    2 * time.Second,
	}
}

// provision returns cfg with defaults filled in.
func (cfg Config) provision() Config {
	if cfg.Name == "" {
		cfg.Name = defaultName()
	}
	if cfg.Bind == "" {
		cfg.Bind = DefaultBind
	}
	if cfg.Label == "" {
		cfg.Label = DefaultLabel
	}
	durations := []struct {
		v *time.Duration
		d time.Duration
	}{
		{&cfg.UpdateTimeout, DefaultUpdateTimeout}, {&cfg.LeaveTimeout, DefaultLeaveTimeout},
		{&cfg.JoinBackoff, DefaultJoinBackoff}, {&cfg.JoinMaxWait, DefaultJoinMaxWait},
		{&cfg.GoneRetention, DefaultGoneRetention},
	}
	for _, f := range durations {
		if *f.v == 0 {
			*f.v = f.d
		}
	}
	if cfg.MessageBuffer == 0 {
		cfg.MessageBuffer = DefaultMessageBuffer
	}
	if cfg.MaxMessage == 0 {
		cfg.MaxMessage = DefaultMaxMessage
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Meta = cfg.Meta.Clone()
	cfg.Seeds = append([]string(nil), cfg.Seeds...)
	cfg.Keys = cloneKeys(cfg.Keys)
	return cfg
}

func defaultName() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "node"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// Validate checks a provisioned config across fields.
func (cfg *Config) Validate() error {
	var errs []error
	if len(cfg.Name) > maxNameLen {
		errs = append(errs, fmt.Errorf("name: %d bytes, at most %d", len(cfg.Name), maxNameLen))
	}
	bind, err := netip.ParseAddrPort(cfg.Bind)
	if err != nil {
		errs = append(errs, fmt.Errorf("bind %q: want ip:port: %v", cfg.Bind, err))
	}
	if cfg.Advertise != "" {
		if _, _, err := splitAdvertise(cfg.Advertise); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range cfg.Seeds {
		if _, _, err := net.SplitHostPort(withPort(s)); err != nil {
			errs = append(errs, fmt.Errorf("seed %q: %v", s, err))
		}
	}
	for i, k := range cfg.Keys {
		if err := memberlist.ValidateKey(k); err != nil {
			errs = append(errs, fmt.Errorf("key %d: %v", i, err))
		}
	}
	if len(cfg.Keys) == 0 && !cfg.Insecure && err == nil && !bind.Addr().IsLoopback() {
		errs = append(errs, fmt.Errorf("bind %s is not loopback: set Keys (gossip encryption) or Insecure", cfg.Bind))
	}
	if len(cfg.Label) > memberlist.LabelMaxSize {
		errs = append(errs, fmt.Errorf("label: %d bytes, at most %d", len(cfg.Label), memberlist.LabelMaxSize))
	}
	if err := cfg.Meta.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := cfg.Timing.validate(); err != nil {
		errs = append(errs, err)
	}
	if cfg.MessageBuffer < 1 || cfg.MaxMessage < 1 {
		errs = append(errs, errors.New("message buffer and max message must be positive"))
	}
	if cfg.JoinBackoff < 0 || cfg.JoinMaxWait < cfg.JoinBackoff {
		errs = append(errs, errors.New("join backoff: want 0 < JoinBackoff <= JoinMaxWait"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cluster: config: %w", err)
	}
	return nil
}

func (t Timing) validate() error {
	if t.ProbeInterval < 0 || t.ProbeTimeout < 0 || t.GossipInterval < 0 ||
		t.SuspicionMult < 0 || t.PushPullInterval < 0 || t.StreamTimeout < 0 {
		return errors.New("timing: negative value")
	}
	if t.ProbeTimeout > 0 && t.ProbeInterval > 0 && t.ProbeTimeout >= t.ProbeInterval {
		return errors.New("timing: probe timeout must be shorter than the probe interval")
	}
	return nil
}

// apply copies the set fields of t onto mc.
func (t Timing) apply(mc *memberlist.Config) {
	set := func(dst *time.Duration, v time.Duration) {
		if v > 0 {
			*dst = v
		}
	}
	set(&mc.ProbeInterval, t.ProbeInterval)
	set(&mc.ProbeTimeout, t.ProbeTimeout)
	set(&mc.GossipInterval, t.GossipInterval)
	set(&mc.PushPullInterval, t.PushPullInterval)
	set(&mc.TCPTimeout, t.StreamTimeout)
	if t.SuspicionMult > 0 {
		mc.SuspicionMult = t.SuspicionMult
	}
}

// withPort appends DefaultPort to an address that has none.
func withPort(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(addr, strconv.Itoa(DefaultPort))
}

// splitAdvertise parses host or host:port (port 0 or none: the bound port).
func splitAdvertise(s string) (string, int, error) {
	host, port := s, 0
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 65535 {
			return "", 0, fmt.Errorf("advertise %q: bad port", s)
		}
		host, port = h, n
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return "", 0, fmt.Errorf("advertise %q: want an IP address: %v", s, err)
	}
	return host, port, nil
}
