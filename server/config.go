package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
	"github.com/switchyard-gw/switchyard/router"
	"github.com/switchyard-gw/switchyard/server/remote"
)

// Defaults. Every Config field left at its zero value takes one of these.
const (
	DefaultListen            = "127.0.0.1:7400"
	DefaultAdminListen       = "127.0.0.1:7480"
	DefaultHeartbeat         = 30 * time.Second            // hb in WELCOME; idle close after 3×
	DefaultHandshakeTimeout  = 5 * time.Second             // first frame must be a HELLO within this
	MaxConnsCeiling          = 1 << 20                     // the derived max_conns never exceeds this (see maxConnsFor)
	DefaultRate              = 2000                        // frames/s a device may send, sustained
	DefaultRateBurst         = 4000                        // frames a device may send at once
	DefaultRateExcessClose   = 3 * time.Second             // a device over its rate this long is closed
	DefaultAcceptRate        = 50000                       // new connections/s, whole gateway
	DefaultAcceptBurst       = 5000                        // new connections at once, whole gateway
	DefaultShedLag           = time.Second                 // expected handshake wait past which new connections are shed
	DefaultAbusePenalty      = 10 * time.Second            // a source that flooded penaltyStrikes times is refused this long
	DefaultMaxOutbound       = 256 << 10                   // bytes queued for a device beyond its socket buffer
	DefaultCloseLinger       = time.Second                 // a connection closing after its last ERROR waits at most this, twice
	DefaultMaxOutbox         = 1 << 20                     // bytes of unacknowledged reliable downstream DATA per session
	DefaultDisconnectRing    = 4096                        // recent disconnects kept (GET /api/v1/disconnects)
	MaxDisconnectRing        = 1 << 20                     // largest DisconnectRing accepted
	DefaultResumeWindow      = 5 * time.Minute             // a detached session waits this long for a resume
	unreadFrames             = 16                          // the default MaxUnread is this many largest frames
	DefaultResumeTokenTTL    = 24 * time.Hour              // lifetime of a resume token
	DefaultDrainTimeout      = 15 * time.Second            // Close without a context deadline drains this long
	DefaultGoAwayRetry       = 2 * time.Second             // retry_ms in GOAWAY: how long a device is still served
	DefaultMoveRate          = remote.DefaultMoveRate      // sessions/s a gateway starts moving after a ring change: 10,000 in about 1 s
	DefaultMoveBuffer        = remote.DefaultMoveBuffer    // bytes of upstream DATA held per session while it moves
	DefaultCheckpointBuffer  = remote.DefaultKeepBuffer    // bytes of frames kept per session after its last checkpoint
	DefaultMoveTimeout       = remote.DefaultMoveTimeout   // a move not finished by then fails (the device gets 503 and resumes)
	DefaultLinkHeartbeat     = remote.DefaultLinkHeartbeat // a link to a shard that read nothing this long sends a Ping
	DefaultLinkTimeout       = remote.DefaultLinkTimeout   // a link to a shard that read nothing this long is closed
	minClusterKey            = 16                          // shortest resume-token key accepted
	DefaultTLSHandshakeQueue = 4096                        // connections waiting for a TLS handshake worker
)

// Config configures a Gateway. The zero value is a working single gateway
// with the embedded echo backend on DefaultListen.
//
// A running gateway takes a new Config with Reload, which applies Rate,
// RateBurst, RateExcessClose, AcceptRate, AcceptBurst, ShedLag, AbusePenalty, MaxConns,
// MaxOutbound, HandshakeTimeout, ResumeWindow, ResumeTokenTTL,
// DrainTimeout, GoAwayRetry, Redirects, AuthSecrets, ClusterKeys,
// LinkKeys, Cluster.Keys, ProxyProtocolNetworks, LogLevel and the TLS
// files and mapping (TLS itself on or off needs a restart), and reports
// any other change as needing a restart (reload.go).
type Config struct {
	// Listen is the device listener address; port 0 picks a free port.
	Listen string
	// AdminListen is the admin HTTP address; port 0 picks a free port;
	// "-" disables the admin listener.
	AdminListen string
	// AdminToken, when set, is the bearer token the admin API requires
	// (/healthz and /readyz stay open for probes).
	AdminToken string
	// Node is this gateway's name, sent in WELCOME. Default: the host name.
	Node string
	// Heartbeat is hb in WELCOME; a device silent for 3× is closed.
	Heartbeat time.Duration
	// HandshakeTimeout bounds the wait for the first frame (HELLO).
	HandshakeTimeout time.Duration
	// MaxFrame is the largest payload accepted (max_frame in WELCOME).
	MaxFrame int
	// MaxConns caps concurrent device connections; beyond it new ones get
	// 503. Zero: what the process's file limit allows (RLIMIT_NOFILE, soft,
	// read at New) minus a reserve for everything else the gateway opens
	// (maxConnsFor), so that at the limit devices get 503 and the admin
	// listener can still accept, instead of accept failing with EMFILE.
	MaxConns int
	// MaxUnread bounds the bytes of one device's input that the gateway
	// has read from the socket and not handled yet. netpoll reads a
	// connection's input whether or not its handler keeps up, so a device
	// that floods could make it buffer without limit; past MaxUnread the
	// device gets ERROR 413 and is closed at once. Default: 16 ×
	// (MaxFrame + the frame header), 1,048,736 bytes with the default
	// MaxFrame. PROTOCOL.md lets a device write 1000 frames at once, and
	// on a fast link netpoll has them all read before the handler has
	// handled the first: the default takes 1000 of 1 KiB, or 16 of the
	// largest, even then (4 × took only 1000 of about 250 bytes, and 8 of
	// the largest were closed with 413). What one flooder can cost is
	// still mostly netpoll's own reads (up to 8 MB between two looks of
	// the handler: TestUnreadInputBounded).
	MaxUnread int
	// AuthSecrets enables token auth when not empty; any secret verifies
	// (key rotation).
	AuthSecrets [][]byte
	// ClusterKeys sign and verify resume tokens, so that any gateway holding
	// them can verify a token without a lookup: the first key signs, any key
	// verifies, so a key can rotate without turning resumes into takeovers
	// (put the new key first and keep the old one until the tokens it
	// signed have expired, ResumeTokenTTL). Empty: a random key per process
	// (resume works only on this process).
	ClusterKeys [][]byte
	// Rate is the sustained frames/s one device may send; RateBurst how
	// many at once. Frames beyond get 429 and are dropped. Rate < 0 disables.
	Rate      float64
	RateBurst int
	// RateExcessClose: a device that keeps exceeding its rate this long is
	// closed with 429.
	RateExcessClose time.Duration
	// AcceptRate and AcceptBurst limit new connections for the whole
	// gateway; beyond them a connection gets 503. AcceptRate < 0 disables.
	AcceptRate  float64
	AcceptBurst int
	// ShedLag: when a new connection would wait longer than this for its
	// handshake (the connections waiting on the gateway over the rate it
	// finishes them), the gateway is behind, and it refuses new
	// connections with 503 and a retry hint (retry_ms in the ERROR) until
	// it catches up, instead of accepting them into a queue they would
	// time out in (shed.go). Default DefaultShedLag; < 0 disables.
	ShedLag time.Duration
	// AbusePenalty: a source (IPv4 address or IPv6 /64) whose connections
	// were closed for flooding three times (unread input over MaxUnread,
	// or far over the rate) is refused at accept, with 503 and a retry
	// hint, until this long after its last flood (penalty.go). Default
	// DefaultAbusePenalty; < 0 disables.
	AbusePenalty time.Duration
	// MaxOutbound bounds the bytes queued for one device that its socket
	// would not take; beyond it the device is a slow consumer and is closed.
	MaxOutbound int
	// CloseLinger bounds how long a connection that is closing after its
	// last ERROR (a slow consumer, a protocol error, a timeout) waits for
	// its socket to take what is queued, and then, half-closed, for the
	// device to close its end (conn.go lingerClose); past either it is
	// closed anyway. Default DefaultCloseLinger.
	CloseLinger time.Duration
	// MaxOutbox bounds a session's unacknowledged reliable downstream bytes;
	// beyond it the device is a slow consumer and is closed.
	MaxOutbox int
	// DisconnectRing is how many recent disconnects the gateway keeps
	// for GET /api/v1/disconnects and `ctl session` (about 100 bytes each).
	DisconnectRing int
	// ResumeWindow is how long a session survives its connection.
	ResumeWindow time.Duration
	// MaxDetached caps the sessions held without a connection (waiting
	// for a resume within ResumeWindow). A detach that would exceed it
	// forgets the session detached the longest ago (counted in
	// switchyard_detached_evicted_total; its device's resume then starts
	// a new session, as after the window; with backend shards the shard,
	// which keeps its own copy, still decides). Default: MaxConns as set
	// at New, so that every device of a full gateway that drops at once
	// can resume. A detached session keeps about 340 bytes (its table
	// entry, id and wheel entry; an outbox only while downstream DATA is
	// unacknowledged, at most MaxOutbox), a tenth of the 3.5 KB budget of
	// an attached one: churn with fresh ids costs at most a tenth more
	// than a full gateway, not memory without bound.
	MaxDetached int
	// ResumeTokenTTL is how long a resume token stays valid.
	ResumeTokenTTL time.Duration
	// DrainTimeout bounds Close when its context has no deadline.
	DrainTimeout time.Duration
	// GoAwayRetry is retry_ms in GOAWAY: how long a device is still served
	// after it was told to go.
	GoAwayRetry time.Duration
	// Redirects are other gateways' device addresses offered in GOAWAY. In
	// a cluster the gateways that gossip shows alive and not draining are
	// offered after these.
	Redirects []string
	// Cluster, when set, joins the gateway to a cluster by gossip: sessions
	// go to the backend shards the gossip reports, placed by the ring
	// (Backends is then derived and must be nil). LinkKeys are required.
	Cluster *ClusterConfig
	// Canary are the canary rules (gray release by device cohort,
	// docs/operations.md): the first rule that selects a device by its
	// HELLO tags and a sticky percentage of its id places it on the shards
	// carrying the rule's labels; the devices no rule selects stay off
	// those shards. Every gateway of a cluster must hold the same rules
	// (a device is placed by the gateway it connects to). Needs Cluster.
	// Gateway.SetRules replaces them at run time. Empty: placement by the
	// ring alone.
	Canary []router.Rule
	// ProxyProtocolNetworks turns the PROXY protocol on for the device
	// listener (docs/operations.md "Behind a load balancer: PROXY
	// protocol"): a connection from these networks (the load balancers)
	// must begin with a PROXY header, version 1 or 2, within
	// HandshakeTimeout, and the address in it is the device's; a
	// connection from anywhere else is closed. Empty: off, every
	// connection is a device.
	ProxyProtocolNetworks []netip.Prefix
	// Version is announced in the gossip metadata.
	Version string
	// Backends, when set, sends sessions to backend shards over links
	// (docs/links.md) instead of the embedded echo backend.
	Backends Directory
	// LinkKeys authenticate the links to backend shards: the first signs,
	// any verifies. Required with Backends.
	LinkKeys [][]byte
	// LinkTLS, when set, runs the links to backend shards over TLS, as
	// its client (docs/links.md "TLS"): RootCAs verify each shard's
	// certificate for the host of its link address; Certificates, when
	// set, are presented to shards that require one. The LinkKeys
	// authentication runs inside the TLS session as without it. Nil:
	// plain TCP. Read at New (restart-only; a reload does not compare it).
	LinkTLS *tls.Config
	// LinkHeartbeat: every LinkHeartbeat, a link to a shard that has read
	// nothing for half of it sends a Ping; the shard answers Pong
	// (docs/links.md, "Liveness"), so a live shard is heard from about
	// every LinkHeartbeat. Default DefaultLinkHeartbeat.
	LinkHeartbeat time.Duration
	// LinkTimeout: a link that has read nothing for this long (no data, no
	// Pong, no Ping) is closed as dead, counted
	// (switchyard_link_timeouts_total) and redialed with the usual backoff
	// when a session needs it: a stopped or vanished shard is noticed
	// within LinkTimeout. At least 2 × LinkHeartbeat. Default
	// DefaultLinkTimeout.
	LinkTimeout time.Duration
	// LinksPerShard is how many links the gateway keeps to each shard;
	// sessions are spread over them by session id. Default
	// DefaultLinksPerShard.
	LinksPerShard int
	// MoveRate is how many sessions per second the gateway starts moving
	// to their new shard after the ring changed (a shard drains or joins),
	// so that a rebalance is not a storm. Default DefaultMoveRate.
	MoveRate float64
	// MoveBuffer bounds the bytes of upstream DATA held for one session
	// while it moves. Beyond it best-effort DATA is dropped and reliable
	// DATA is not ACKed (the device resends it), as with an open circuit.
	// Default DefaultMoveBuffer.
	MoveBuffer int
	// MoveTimeout bounds one move, from Snapshot to the new shard's
	// Opened; a move that takes longer fails and its device gets 503.
	// Default DefaultMoveTimeout.
	MoveTimeout time.Duration
	// CheckpointBuffer bounds what the gateway keeps of one session, after
	// the last checkpoint its shard sent, to reopen it elsewhere if the
	// shard crashes: the reliable upstream DATA sent to the shard since,
	// and the downstream DATA the device has not ACKed (docs/links.md
	// "Checkpoints"). Beyond it the oldest frames are dropped and counted;
	// a dropped upstream frame makes the session unrecoverable until the
	// next checkpoint. Default DefaultCheckpointBuffer.
	CheckpointBuffer int
	// MaxLinkQueue bounds the bytes queued on one link to a shard; a send
	// beyond it opens the shard's circuit. Default DefaultMaxLinkQueue.
	MaxLinkQueue int
	// TLSCertFile and TLSKeyFile (PEM, both or neither) make the device
	// listener TLS-only (docs/tls.md). A reload re-reads them (and
	// TLSClientCAFile): new handshakes use the new certificate, sessions
	// already up keep theirs; a file that does not load fails the reload
	// and the running certificate stays.
	TLSCertFile string
	TLSKeyFile  string
	// TLSClientCAFile, with TLSCertFile: devices must present a client
	// certificate signed by one of its CAs (PEM), and the HELLO's device id
	// must be the certificate's (TLSClientCertDeviceID), else 401.
	TLSClientCAFile string
	// TLSClientCertDeviceID says where a client certificate names its
	// device: CertDeviceCN (default), CertDeviceSANDNS or CertDeviceSANURI.
	TLSClientCertDeviceID string
	// TLSHandshakeWorkers is the size of the pool running TLS handshakes
	// (records are handled on the event loop). Default 4 × GOMAXPROCS.
	TLSHandshakeWorkers int
	// TLSHandshakeQueue bounds the connections waiting for a handshake
	// worker; beyond, a new connection is closed and counted. Default
	// DefaultTLSHandshakeQueue.
	TLSHandshakeQueue int
	// Logger receives the gateway's logs; nil discards them.
	Logger *slog.Logger
	// Commit is the source revision the binary was built from, shown by
	// the admin API (GET /api/v1/info).
	Commit string
	// ConfigHash identifies the configuration the gateway runs with (the
	// command computes it), shown by the admin API so that an operator
	// can tell which gateways run the same configuration. A reload that
	// passes validation replaces it (restart-only changes included: it
	// names what was loaded, not what was applied).
	ConfigHash string
	// LogLevel is the level LevelVar is set to at New and at every
	// Reload (reloadable). Without LevelVar it is only compared.
	LogLevel slog.Level
	// LevelVar, when set, is the level of Logger's handler; the gateway
	// sets it to LogLevel, so a reload can change what is logged.
	LevelVar *slog.LevelVar
	// Reloader, when set, builds the configuration a reload applies (the
	// command re-reads its file and environment and keeps its flags):
	// Reread and the admin API's POST /api/v1/reload call it. Nil: those
	// answer that the gateway has no configuration source; Reload still
	// works.
	Reloader func(context.Context) (Config, error)
}

// provision returns cfg with defaults filled in.
func (cfg Config) provision() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.AdminListen == "" {
		cfg.AdminListen = DefaultAdminListen
	}
	def(&cfg.Heartbeat, DefaultHeartbeat)
	def(&cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&cfg.ShedLag, DefaultShedLag)
	def(&cfg.AbusePenalty, DefaultAbusePenalty)
	def(&cfg.RateExcessClose, DefaultRateExcessClose)
	def(&cfg.CloseLinger, DefaultCloseLinger)
	def(&cfg.ResumeWindow, DefaultResumeWindow)
	def(&cfg.ResumeTokenTTL, DefaultResumeTokenTTL)
	def(&cfg.DrainTimeout, DefaultDrainTimeout)
	def(&cfg.GoAwayRetry, DefaultGoAwayRetry)
	def(&cfg.MoveTimeout, DefaultMoveTimeout)
	def(&cfg.LinkHeartbeat, DefaultLinkHeartbeat)
	def(&cfg.LinkTimeout, DefaultLinkTimeout)
	ints := []struct {
		v *int
		d int
	}{
		{&cfg.MaxFrame, protocol.DefaultMaxFrame},
		{&cfg.RateBurst, DefaultRateBurst}, {&cfg.AcceptBurst, DefaultAcceptBurst},
		{&cfg.MaxOutbound, DefaultMaxOutbound}, {&cfg.MaxOutbox, DefaultMaxOutbox}, {&cfg.DisconnectRing, DefaultDisconnectRing},
		{&cfg.MoveBuffer, DefaultMoveBuffer},
		{&cfg.CheckpointBuffer, DefaultCheckpointBuffer}, {&cfg.MaxLinkQueue, DefaultMaxLinkQueue},
		{&cfg.TLSHandshakeWorkers, defaultTLSHandshakeWorkers()}, {&cfg.TLSHandshakeQueue, DefaultTLSHandshakeQueue},
	}
	for _, f := range ints {
		if *f.v == 0 {
			*f.v = f.d
		}
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = maxConnsFor(fdLimit(), cfg.LinksPerShard)
	}
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.AcceptRate == 0 {
		cfg.AcceptRate = DefaultAcceptRate
	}
	if cfg.MoveRate == 0 {
		cfg.MoveRate = DefaultMoveRate
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TLSClientCAFile != "" && cfg.TLSClientCertDeviceID == "" {
		cfg.TLSClientCertDeviceID = CertDeviceCN
	}
	return cfg
}

// Validate checks a provisioned config across fields.
func (cfg *Config) Validate() error {
	var errs []error
	if cfg.Heartbeat < time.Second || cfg.Heartbeat%time.Second != 0 {
		errs = append(errs, fmt.Errorf("heartbeat %v: want whole seconds, at least 1s", cfg.Heartbeat))
	}
	if cfg.MaxFrame < protocol.MaxHelloPayload || cfg.MaxFrame > 16<<20 {
		errs = append(errs, fmt.Errorf("max frame %d: want %d..%d", cfg.MaxFrame, protocol.MaxHelloPayload, 16<<20))
	}
	if cfg.MaxConns < 0 || cfg.RateBurst < 1 || cfg.AcceptBurst < 1 {
		errs = append(errs, errors.New("max conns must not be negative (0: from the file limit); rate burst and accept burst must be positive"))
	}
	if cfg.MaxOutbound < cfg.MaxFrame+protocol.HeaderSize {
		errs = append(errs, fmt.Errorf("max outbound %d: want at least one frame (%d)", cfg.MaxOutbound, cfg.MaxFrame+protocol.HeaderSize))
	}
	if cfg.MaxUnread != 0 && cfg.MaxUnread < cfg.MaxFrame+protocol.HeaderSize {
		errs = append(errs, fmt.Errorf("max unread %d: want at least one frame (%d)", cfg.MaxUnread, cfg.MaxFrame+protocol.HeaderSize))
	}
	if cfg.CloseLinger < 0 {
		errs = append(errs, fmt.Errorf("close linger %v: must not be negative", cfg.CloseLinger))
	}
	if cfg.MaxDetached < 0 {
		errs = append(errs, fmt.Errorf("max detached %d: must not be negative", cfg.MaxDetached))
	}
	if cfg.DisconnectRing < 1 || cfg.DisconnectRing > MaxDisconnectRing {
		errs = append(errs, fmt.Errorf("disconnect ring %d: want 1..%d", cfg.DisconnectRing, MaxDisconnectRing))
	}
	if cfg.MaxOutbox < cfg.MaxFrame {
		errs = append(errs, fmt.Errorf("max outbox %d: want at least max frame", cfg.MaxOutbox))
	}
	for i, s := range cfg.AuthSecrets {
		if len(s) == 0 {
			errs = append(errs, fmt.Errorf("auth secret %d is empty", i))
		}
	}
	if cfg.LinkHeartbeat < 0 || cfg.LinkTimeout < 2*cfg.LinkHeartbeat {
		errs = append(errs, fmt.Errorf("link timeout %v: want at least twice the link heartbeat %v", cfg.LinkTimeout, cfg.LinkHeartbeat))
	}
	if (cfg.Backends != nil || cfg.Cluster != nil) && len(cfg.LinkKeys) == 0 {
		errs = append(errs, errors.New("backends need link keys"))
	}
	if len(cfg.Canary) > 0 && cfg.Cluster == nil {
		errs = append(errs, errors.New("canary rules need a cluster (they place devices on the ring's labelled shards)"))
	}
	if err := router.ValidateRules(cfg.Canary); err != nil {
		errs = append(errs, fmt.Errorf("canary: %w", err))
	}
	if cfg.Backends != nil && cfg.Cluster != nil {
		errs = append(errs, errors.New("set Backends or Cluster, not both"))
	}
	if cfg.MoveRate < 0 || cfg.MoveBuffer < 0 || cfg.MoveTimeout < 0 || cfg.CheckpointBuffer < 0 || cfg.MaxLinkQueue < 0 {
		errs = append(errs, errors.New("move rate, move buffer and move timeout must not be negative"))
	}
	for i, k := range cfg.ClusterKeys {
		if len(k) < minClusterKey {
			errs = append(errs, fmt.Errorf("cluster key %d: want at least %d bytes", i, minClusterKey))
		}
	}
	if err := validateProxyNetworks(cfg.ProxyProtocolNetworks); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, cfg.validateTLS()...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("server: config: %w", err)
	}
	return nil
}

// fdReserve is the part of the file limit that the derived MaxConns leaves
// to everything but device connections: fdReserveBase for the listeners,
// the admin API's connections (scrapes, probes, ctl), gossip, the
// process's own files and the refused connections still being closed,
// and links to fdReserveShards shards.
const (
	fdReserveBase   = 64
	fdReserveShards = 32
)

// maxConnsFor is the default MaxConns for a file limit: the limit minus
// fdReserveBase + fdReserveShards × linksPerShard (128 with the default 2
// links per shard: 19,872 of 20,000), at most MaxConnsCeiling; half the
// limit when the reserve would take more than that (a tiny limit), and
// MaxConnsCeiling when the limit is unknown.
func maxConnsFor(limit float64, linksPerShard int) int {
	if limit <= 0 {
		return MaxConnsCeiling
	}
	if linksPerShard <= 0 {
		linksPerShard = DefaultLinksPerShard
	}
	n := int64(limit)
	reserve := int64(fdReserveBase + fdReserveShards*linksPerShard)
	if n <= 2*reserve {
		return int(max(n/2, 1))
	}
	return int(min(n-reserve, MaxConnsCeiling))
}

// maxUnread is the MaxUnread in force: as configured, or derived from
// MaxFrame (kept out of provision, so that a reload changing max_frame
// does not also report max_unread).
func (cfg *Config) maxUnread() int {
	if cfg.MaxUnread > 0 {
		return cfg.MaxUnread
	}
	return unreadFrames * (cfg.MaxFrame + protocol.HeaderSize)
}

// maxDetached is the MaxDetached in force: as configured, or MaxConns.
func (cfg *Config) maxDetached() int {
	if cfg.MaxDetached > 0 {
		return cfg.MaxDetached
	}
	return cfg.MaxConns
}
