package backend

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/switchyard-gw/switchyard/protocol"
	"github.com/switchyard-gw/switchyard/router"
)

// Defaults. Every Config field left at its zero value takes one of these.
const (
	DefaultLink         = "127.0.0.1:7600" // link listener, announced to the gateways
	DefaultResumeWindow = 5 * time.Minute  // a detached session waits this long for a resume
	DefaultMaxOutbox    = 1 << 20          // unacknowledged reliable downstream bytes per session
	DefaultMaxLinkQueue = 8 << 20          // bytes waiting for one link's writer
	DefaultMaxMailbox   = 1024             // handler events waiting per session
	DefaultWorkers      = 32               // goroutines running handler calls
	DefaultMaxLinks     = 256              // concurrent gateway links, authenticated or not
	DefaultAuthTimeout  = 5 * time.Second  // a new link must finish the 3 steps within this
	DefaultPingInterval = time.Second      // a link that read nothing lately sends a Ping this often (the gateway's heartbeat: server/remote/config.go says why)
	DefaultLinkTimeout  = 3 * time.Second  // a link that read nothing this long is closed
	DefaultWriteTimeout = 10 * time.Second // one batched write may take this long
	DefaultCheckpoint   = time.Second      // a changed session's state goes to its gateway this often
	DefaultMaxCkpt      = 64 << 10         // largest checkpoint sent (encoded bytes)
	DefaultJoinWarning  = 10 * time.Second // a shard not in the cluster this long after Start says so (WARN)
	DefaultAdminListen  = "-"              // no admin listener unless asked for
	minKeyLen           = 16               // shortest cluster key accepted
	maxWorkers          = 4096             // more handler goroutines than this is a mistake
	minResumeWindow     = time.Millisecond // below this a session could expire before its Close
	minPingInterval     = time.Millisecond // tests use a few ms; production seconds
)

// Config configures a Server. The zero value of every field but Shard,
// ClusterKeys and Handler keeps the named default.
type Config struct {
	// Shard is this backend shard's name, the ring member the gateways
	// place devices on. Required.
	Shard string
	// Link is the address the gateway links are accepted on; port 0 picks
	// a free port and Server.Addr reports it. Default DefaultLink.
	Link string
	// ClusterKeys authenticate the links (docs/links.md): the first key
	// signs, any key verifies, so keys can rotate. Required; each key at
	// least 16 bytes.
	ClusterKeys [][]byte
	// Handler receives the sessions' opens, messages and closes. Required.
	// When it also implements Snapshotter, its snapshots travel with a
	// session that moves to another shard.
	Handler Handler
	// ResumeWindow is how long a session whose device went away (gateway
	// Close or link loss) is kept for a resume before OnClose runs and the
	// session is forgotten. Default DefaultResumeWindow.
	ResumeWindow time.Duration
	// MaxOutbox bounds one session's unacknowledged reliable downstream
	// payload bytes; Send beyond it fails with ErrOutboxFull. Default
	// DefaultMaxOutbox.
	MaxOutbox int
	// MaxLinkQueue bounds the bytes waiting for one link's writer (the
	// write in flight not counted). Best-effort frames beyond it are
	// dropped and counted; frames that must not be lost (control, UpAck,
	// reliable Down) may use a second MaxLinkQueue, beyond which the link
	// is closed as a slow consumer. An empty queue always takes one frame.
	// Default DefaultMaxLinkQueue.
	MaxLinkQueue int
	// MaxMailbox bounds the handler events (Up, open, snapshot, close)
	// waiting for one session; an Up beyond it is dropped and counted, and
	// reliable ones are not acknowledged. Default DefaultMaxMailbox.
	MaxMailbox int
	// Workers is the number of goroutines that run handler calls. Calls
	// are serial within a session and concurrent across sessions up to
	// this many at once. Default DefaultWorkers.
	Workers int
	// MaxLinks caps concurrent gateway links; more are closed at accept.
	// Default DefaultMaxLinks.
	MaxLinks int
	// AuthTimeout bounds the link authentication (with LinkTLS, the TLS
	// handshake too). Default DefaultAuthTimeout.
	AuthTimeout time.Duration
	// LinkTLS, when set, accepts links over TLS only, as their server
	// (docs/links.md "TLS"): Certificates (required) is the shard's,
	// naming its link address; with ClientCAs and ClientAuth set, the
	// gateways must present a certificate too (mutual TLS). The
	// ClusterKeys authentication runs inside the TLS session as without
	// it. A connection that fails the handshake is closed and counted
	// (Stats.LinkTLSFailures). Nil: plain TCP.
	LinkTLS *tls.Config
	// PingInterval: every PingInterval, a link that has read nothing for
	// half of it sends a Ping; the gateway answers Pong (docs/links.md,
	// "Liveness"). Default DefaultPingInterval.
	PingInterval time.Duration
	// LinkTimeout: a link that has read nothing for this long (no data, no
	// Ping, no Pong) is closed as dead and counted (Stats.LinksIdle): a
	// stopped or vanished gateway is noticed within LinkTimeout and its
	// sessions detach (they wait ResumeWindow for the device). At least
	// 2 × PingInterval. Default DefaultLinkTimeout.
	LinkTimeout time.Duration
	// WriteTimeout bounds one batched link write; a link that cannot take
	// a batch in time is closed. Default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// CheckpointInterval: a session whose state changed sends a checkpoint
	// to its gateway at most this often, and one right after it opened;
	// the gateway reopens the session from it on another shard if this
	// one crashes (checkpoint.go). Negative: no checkpoints (a crash then
	// loses the sessions' state). Default DefaultCheckpoint.
	CheckpointInterval time.Duration
	// MaxCheckpoint bounds one checkpoint's encoded size (the handler's
	// snapshot, sequences, tags, topics); a larger one is not sent and is
	// counted (Stats.CheckpointsTooLarge). Default DefaultMaxCkpt.
	MaxCheckpoint int
	// Forwarder reaches devices whose sessions live on other shards (Push
	// and Kick). Nil: local only, and those calls fail with ErrNotOwner.
	Forwarder Forwarder
	// Announcer publishes this shard to the cluster (gossip metadata):
	// active at Start, draining at Drain, left at Close. Nil: nothing is
	// announced.
	Announcer Announcer
	// Labels are the shard's labels (e.g. version=2.1, zone=a), announced
	// with it (Announcement.Labels, the gossip metadata): the gateways'
	// canary rules place their cohorts on the shards whose labels include
	// the rule's (docs/operations.md "Canary roll-out"). Keys and values
	// are tokens (router.ValidToken), at most router.MaxLabels. Nil: the
	// shard is unlabelled and takes the devices no rule selects.
	Labels map[string]string
	// Gossip, when set (and Announcer and Forwarder are nil), makes the
	// shard a cluster member: it announces itself by gossip and forwards
	// Push and Kick to the owning shard. Its Meta is filled in (only
	// Meta.Version is taken from here; Meta.Labels too when Labels is
	// nil, as before Labels existed).
	Gossip *cluster.Config
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// AdminListen is the address of the shard's admin HTTP listener:
	// /metrics (docs/operations.md "Metrics"), /healthz and /readyz
	// (admin.go). Port 0 picks a free port and Server.AdminAddr reports
	// it. Default "-": no admin listener (`switchyard backend` turns it
	// on, at 127.0.0.1:7680).
	AdminListen string
	// AdminToken, when not empty, is the bearer token /metrics wants;
	// /healthz and /readyz answer without it, as the gateway's do.
	AdminToken string
	// Version and Commit label switchyard_build_info (the binary sets
	// them from its build); empty is allowed.
	Version, Commit string
	// JoinWarning: with Gossip, a shard still outside the cluster this
	// long after Start began logs a WARN naming the likely cause (no seed
	// reachable, or seeds that answer but do not let it in: a wrong key),
	// and again every JoinWarning until it joins or ctx ends. Default
	// DefaultJoinWarning.
	JoinWarning time.Duration
}

// provision returns cfg with defaults filled in.
func (cfg Config) provision() Config {
	dur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	num := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if cfg.Link == "" {
		cfg.Link = DefaultLink
	}
	if cfg.AdminListen == "" {
		cfg.AdminListen = DefaultAdminListen
	}
	cfg.Labels = maps.Clone(cfg.Labels) // the caller's map stays the caller's
	dur(&cfg.ResumeWindow, DefaultResumeWindow)
	dur(&cfg.AuthTimeout, DefaultAuthTimeout)
	dur(&cfg.PingInterval, DefaultPingInterval)
	dur(&cfg.LinkTimeout, DefaultLinkTimeout)
	dur(&cfg.WriteTimeout, DefaultWriteTimeout)
	dur(&cfg.CheckpointInterval, DefaultCheckpoint)
	dur(&cfg.JoinWarning, DefaultJoinWarning)
	num(&cfg.MaxCheckpoint, DefaultMaxCkpt)
	num(&cfg.MaxOutbox, DefaultMaxOutbox)
	num(&cfg.MaxLinkQueue, DefaultMaxLinkQueue)
	num(&cfg.MaxMailbox, DefaultMaxMailbox)
	num(&cfg.Workers, DefaultWorkers)
	num(&cfg.MaxLinks, DefaultMaxLinks)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// labels returns the shard's labels: Labels, or the gossip metadata's.
func (cfg *Config) labels() map[string]string {
	if cfg.Labels == nil && cfg.Gossip != nil {
		return cfg.Gossip.Meta.Labels
	}
	return cfg.Labels
}

// Validate checks a config across fields after the defaults are filled
// in (New does both).
func (cfg *Config) Validate() error {
	c := cfg.provision()
	var errs []error
	if c.Shard == "" {
		errs = append(errs, errors.New("shard name is required"))
	}
	if c.Handler == nil {
		errs = append(errs, errors.New("handler is required"))
	}
	if len(c.ClusterKeys) == 0 {
		errs = append(errs, errors.New("cluster keys are required (links are authenticated)"))
	}
	for i, k := range c.ClusterKeys {
		if len(k) < minKeyLen {
			errs = append(errs, fmt.Errorf("cluster key %d: want at least %d bytes", i, minKeyLen))
		}
	}
	if c.ResumeWindow < minResumeWindow || c.PingInterval < minPingInterval ||
		c.AuthTimeout < 0 || c.WriteTimeout < 0 {
		errs = append(errs, errors.New("resume window, ping interval, auth and write timeouts must be positive"))
	}
	if c.LinkTLS != nil && len(c.LinkTLS.Certificates) == 0 && c.LinkTLS.GetCertificate == nil {
		errs = append(errs, errors.New("link TLS needs the shard's certificate"))
	}
	if c.JoinWarning < 0 {
		errs = append(errs, fmt.Errorf("join warning %v: want positive", c.JoinWarning))
	}
	if c.LinkTimeout < 2*c.PingInterval {
		errs = append(errs, fmt.Errorf("link timeout %v: want at least twice the ping interval %v", c.LinkTimeout, c.PingInterval))
	}
	if c.MaxCheckpoint < 1 || c.MaxCheckpoint > maxPayload {
		errs = append(errs, fmt.Errorf("max checkpoint %d: want 1..%d", c.MaxCheckpoint, maxPayload))
	}
	if c.MaxOutbox < 1 || c.MaxMailbox < 1 || c.MaxLinks < 1 {
		errs = append(errs, errors.New("max outbox, max mailbox and max links must be positive"))
	}
	if c.MaxLinkQueue < 1 || c.MaxLinkQueue > protocol.MaxLinkFrame {
		errs = append(errs, fmt.Errorf("max link queue %d: want 1..%d", c.MaxLinkQueue, protocol.MaxLinkFrame))
	}
	if err := router.ValidateLabels(c.labels()); err != nil {
		errs = append(errs, fmt.Errorf("labels: %w", err))
	}
	if c.Workers < 1 || c.Workers > maxWorkers {
		errs = append(errs, fmt.Errorf("workers %d: want 1..%d", c.Workers, maxWorkers))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("backend: config: %w", err)
	}
	return nil
}
