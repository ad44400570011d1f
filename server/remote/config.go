package remote

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults. Every Config field left at its zero value takes one of these.
//
// The link heartbeat finds a shard that went silent without a word (its
// host or the network gone: a killed process's links get an RST at once).
// Every idle link pings both ways each period, and a cluster has gateways
// × shards × LinksPerShard links: at 250 ms, 55 idle gateways and 3 shards
// on the 2-core test box spent 0.77 cores on them and the rest of their
// idling, at 1 s 0.42 (docs/benchmarks.md "Idle cluster: link
// heartbeats"). A silent shard is noticed within 3 s, still ahead of
// gossip's 5–6 s (DESIGN.md), and a stall of a loaded box under 3 s no
// longer drops healthy links (docs/chaos.md).
const (
	DefaultLinksPerShard = 2               // links from a gateway to each shard
	DefaultMaxLinkQueue  = 4 << 20         // bytes queued on one link; beyond, the shard's circuit opens
	DefaultLinkHeartbeat = time.Second     // a link to a shard that read nothing this long sends a Ping (see below)
	DefaultLinkTimeout   = 3 * time.Second // a link to a shard that read nothing this long is closed
	DefaultMoveRate      = 10000           // sessions/s a gateway starts moving after a ring change: 10,000 in about 1 s
	DefaultMoveBuffer    = 64 << 10        // bytes of upstream DATA held per session while it moves
	DefaultMoveTimeout   = 5 * time.Second // a move not finished by then fails (the device gets 503 and resumes)
	DefaultKeepBuffer    = 64 << 10        // bytes of frames kept per session after its last checkpoint
)

// Config configures a Backend. The gateway (package server) fills it from
// its own Config, which documents the same settings for operators.
type Config struct {
	// Directory names each device's shard and that shard's link address.
	// Required.
	Directory Directory
	// Keys authenticate the links (docs/links.md): the first signs, any
	// verifies. Required.
	Keys [][]byte
	// TLS, when set, runs every link over TLS as its client
	// (docs/links.md "TLS"): the shard's certificate is verified against
	// RootCAs for the host of its link address (unless ServerName is
	// set); Certificates are presented to shards that ask. Keys
	// authenticate inside the TLS session as without it. Nil: plain TCP.
	TLS *tls.Config
	// LinksPerShard is how many links the gateway keeps to each shard;
	// sessions are spread over them by session id. Zero or less: the
	// default, DefaultLinksPerShard.
	LinksPerShard int
	// MaxLinkQueue bounds the bytes queued on one link; a send beyond it
	// opens the shard's circuit. Default DefaultMaxLinkQueue.
	MaxLinkQueue int
	// LinkHeartbeat: every LinkHeartbeat, a link that has read nothing for
	// half of it sends a Ping. Default DefaultLinkHeartbeat.
	LinkHeartbeat time.Duration
	// LinkTimeout: a link that has read nothing for this long is closed as
	// dead; a down shard comes back once a link stayed up this long. At
	// least 2 × LinkHeartbeat. Default DefaultLinkTimeout.
	LinkTimeout time.Duration
	// MoveRate is how many sessions per second the mover starts moving
	// after a ring change. Default DefaultMoveRate.
	MoveRate float64
	// MoveBuffer bounds the bytes of upstream DATA held for one session
	// while it moves. Default DefaultMoveBuffer.
	MoveBuffer int
	// MoveTimeout bounds one move, from Snapshot to the new shard's
	// Opened. Default DefaultMoveTimeout.
	MoveTimeout time.Duration
	// KeepBuffer bounds the frames kept for one session against a crash of
	// its shard: reliable upstream after the last checkpoint and
	// downstream the device has not ACKed (keep.go). Default
	// DefaultKeepBuffer.
	KeepBuffer int
	// Logger receives the shard side's logs; nil discards them.
	Logger *slog.Logger
	// Metrics holds the shard side's series (NewMetrics on the gateway's
	// set). Nil: a set of their own, exposed nowhere.
	Metrics *Metrics
	// Devices lists the gateway's devices that have a session attached;
	// the mover calls it once per pass after a ring change. Nil: none.
	Devices func() []Device
	// ShardsChanged is called, from a link or ring watcher goroutine,
	// when a shard went down for this gateway (its last link failed) or
	// came back (BringBack): the gateway rebuilds its ring (WithoutDown).
	// Nil: nothing is called.
	ShardsChanged func()
}

// provision returns cfg with defaults filled in.
func (cfg Config) provision() Config {
	if cfg.LinksPerShard <= 0 {
		cfg.LinksPerShard = DefaultLinksPerShard
	}
	cfg.MaxLinkQueue = cmp.Or(cfg.MaxLinkQueue, DefaultMaxLinkQueue)
	cfg.LinkHeartbeat = cmp.Or(cfg.LinkHeartbeat, DefaultLinkHeartbeat)
	cfg.LinkTimeout = cmp.Or(cfg.LinkTimeout, DefaultLinkTimeout)
	cfg.MoveRate = cmp.Or(cfg.MoveRate, DefaultMoveRate)
	cfg.MoveBuffer = cmp.Or(cfg.MoveBuffer, DefaultMoveBuffer)
	cfg.MoveTimeout = cmp.Or(cfg.MoveTimeout, DefaultMoveTimeout)
	cfg.KeepBuffer = cmp.Or(cfg.KeepBuffer, DefaultKeepBuffer)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Devices == nil {
		cfg.Devices = func() []Device { return nil }
	}
	if cfg.ShardsChanged == nil {
		cfg.ShardsChanged = func() {}
	}
	return cfg
}

// Validate checks a provisioned config across fields.
func (cfg *Config) Validate() error {
	var errs []error
	if cfg.Directory == nil {
		errs = append(errs, errors.New("no directory"))
	}
	if len(cfg.Keys) == 0 {
		errs = append(errs, errors.New("backends need link keys"))
	}
	if cfg.MaxLinkQueue < 0 {
		errs = append(errs, errors.New("max link queue must not be negative"))
	}
	if cfg.LinkHeartbeat < 0 || cfg.LinkTimeout < 2*cfg.LinkHeartbeat {
		errs = append(errs, fmt.Errorf("link timeout %v: want at least twice the link heartbeat %v", cfg.LinkTimeout, cfg.LinkHeartbeat))
	}
	if cfg.MoveRate < 0 || cfg.MoveBuffer < 0 || cfg.MoveTimeout < 0 || cfg.KeepBuffer < 0 {
		errs = append(errs, errors.New("move rate, move buffer, move timeout and checkpoint buffer must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remote: config: %w", err)
	}
	return nil
}
