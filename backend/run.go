package backend

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/switchyard-gw/switchyard/cluster"
)

// Run defaults.
const (
	DefaultRunDrain = 10 * time.Second // Run's drain waits this long for the gateways to move the sessions away
	DefaultRunClose = 5 * time.Second  // Run's Close after the drain
	seedDialTimeout = time.Second      // the reachability check of each seed
)

// RunConfig is what Run needs to run one shard of a cluster. Shard,
// Gossip and KeyFile are required; every other zero field keeps its
// default.
type RunConfig struct {
	// Shard is the shard's name, unique in the cluster. Required.
	Shard string
	// Link is the link listener gateways connect to. Default DefaultLink.
	Link string
	// Gossip is the gossip bind address, host:port. Required.
	Gossip string
	// Seeds are gossip addresses of members to join (any gateway or
	// shard). None: this shard starts a new cluster.
	Seeds []string
	// KeyFile is the cluster key file, one secret per line, the same file
	// the gateways read: Run derives the gossip and link keys from it
	// (cluster.DeriveKeys). Required.
	KeyFile string
	// Labels are announced in gossip (canary placement selects shards by
	// them).
	Labels map[string]string
	// Version is announced in gossip.
	Version string
	// DrainTimeout bounds the drain when ctx ends or a gateway asked for
	// it. Default DefaultRunDrain.
	DrainTimeout time.Duration
	// Server holds the Server's other settings (limits, timeouts,
	// checkpoints, LinkTLS). Run sets its Shard, Link, ClusterKeys, Handler and
	// Logger; its Gossip, when set, is the template of the gossip config
	// (Label, Advertise, Timing, ...) whose Bind, Seeds, Keys, Meta and
	// Logger Run fills in.
	Server Config
	// Logger receives the logs. Nil: text on stderr.
	Logger *slog.Logger
}

// RegisterFlags defines the usual flags of a standalone shard on fs,
// filling cfg when fs is parsed: -shard, -link, -gossip, -join
// (comma-separated), -cluster-key-file, -drain-timeout.
func (cfg *RunConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&cfg.Shard, "shard", cfg.Shard, "shard `name` (required, unique in the cluster)")
	fs.StringVar(&cfg.Link, "link", DefaultLink, "link listener `address` gateways connect to")
	fs.StringVar(&cfg.Gossip, "gossip", cfg.Gossip, "gossip `address` (host:port, required)")
	fs.Func("join", "comma-separated gossip `addresses` of cluster members to join", func(s string) error {
		for _, v := range strings.Split(s, ",") {
			if v = strings.TrimSpace(v); v != "" {
				cfg.Seeds = append(cfg.Seeds, v)
			}
		}
		return nil
	})
	fs.StringVar(&cfg.KeyFile, "cluster-key-file", cfg.KeyFile, "cluster key `file`, one secret per line (required)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", DefaultRunDrain, "how long the drain on exit waits for the gateways")
}

// Run runs one backend shard with handler h until ctx ends or a gateway
// asks the shard to drain (the admin API's shard drain), then drains it
// (its sessions move to other shards with their state) and closes it:
//
//	read KeyFile → derive keys → New → Start (bind, join the gossip)
//	  → serve until ctx ends or DrainRequested → Drain → Close
//
// A shard that has not joined after Server.JoinWarning logs a WARN:
// whether its seeds answer at all (an unreachable seed) or do but do not
// let it in (a wrong key or label). Run returns nil after a clean
// drain, the first error otherwise (a join that never happened before
// ctx ended wraps cluster.ErrJoin).
func Run(ctx context.Context, cfg RunConfig, h Handler) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	switch {
	case cfg.Shard == "" || cfg.Gossip == "" || cfg.KeyFile == "":
		return errors.New("backend: run: Shard, Gossip and KeyFile are required")
	case h == nil:
		return errors.New("backend: run: a handler is required")
	}
	secrets, err := cluster.ReadKeyFile(cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("backend: run: %w", err)
	}
	gossipKeys, linkKeys := cluster.DeriveKeys(secrets)
	scfg := cfg.Server
	scfg.Shard, scfg.Link, scfg.ClusterKeys, scfg.Handler, scfg.Logger = cfg.Shard, cfg.Link, linkKeys, h, log
	scfg.Announcer, scfg.Forwarder = nil, nil
	var gcfg cluster.Config
	if scfg.Gossip != nil {
		gcfg = *scfg.Gossip // the template: label, advertise address, timings
	}
	gcfg.Bind, gcfg.Seeds, gcfg.Keys, gcfg.Logger = cfg.Gossip, cfg.Seeds, gossipKeys, log
	gcfg.Meta = cluster.Meta{Version: cfg.Version, Labels: cfg.Labels}
	scfg.Gossip = &gcfg
	srv, err := New(scfg)
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		cctx, cancel := context.WithTimeout(context.Background(), DefaultRunClose)
		defer cancel()
		return errors.Join(err, srv.Close(cctx))
	}
	log.Info("shard in the cluster", "shard", cfg.Shard, "link", srv.Addr(), "gossip", srv.GossipAddr())
	select {
	case <-ctx.Done():
	case <-srv.DrainRequested():
	}
	dctx, cancel := context.WithTimeout(context.Background(), cmpDur(cfg.DrainTimeout, DefaultRunDrain))
	defer cancel()
	derr := srv.Drain(dctx)
	cctx, cancel2 := context.WithTimeout(context.Background(), DefaultRunClose)
	defer cancel2()
	return errors.Join(derr, srv.Close(cctx))
}

func cmpDur(v, d time.Duration) time.Duration {
	if v <= 0 {
		return d
	}
	return v
}

// watchJoin logs a WARN every warn until the returned stop is called
// (the gossip node's Start returned): the join keeps failing. It tells an unreachable seed
// from one that answers but does not let the shard in, which is what a
// wrong cluster key or label looks like from here (the seed drops the
// connection).
func watchJoin(log *slog.Logger, seeds []string, warn time.Duration) (stop func()) {
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(warn)
		defer t.Stop()
		for waited := warn; ; waited += warn {
			select {
			case <-done:
				return
			case <-t.C:
			}
			var unreachable []string
			for _, s := range seeds {
				if c, err := net.DialTimeout("tcp", s, seedDialTimeout); err != nil {
					unreachable = append(unreachable, s)
				} else {
					c.Close()
				}
			}
			if len(unreachable) == len(seeds) {
				log.Warn(fmt.Sprintf("not joined after %v: no seed reachable: check the seeds and that they run", waited),
					"seeds", seeds)
				continue
			}
			log.Warn(fmt.Sprintf("not joined after %v: seeds reachable but not letting this shard in: check the cluster key file (same file as the gateways) and label", waited),
				"seeds", seeds, "unreachable", unreachable)
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}

// DrainRequested is closed when a gateway asked this shard to drain
// (cluster.DrainRequest, the admin API's shard drain). Whoever runs the
// Server then drains and closes it, as on SIGTERM; Run does.
func (srv *Server) DrainRequested() <-chan struct{} { return srv.drainReq }

// requestDrain closes DrainRequested once.
func (srv *Server) requestDrain(from string) {
	srv.drainOnce.Do(func() {
		srv.log.Info("drain requested by a cluster member", "from", from)
		close(srv.drainReq)
	})
}

// warnRawGossipKeys logs the key mistake that otherwise leaves a shard
// silently outside the cluster: the key file's lines used as gossip keys
// as they are, while every other node derives them (cluster.DeriveKeys).
func (srv *Server) warnRawGossipKeys() {
	if srv.cfg.Gossip == nil {
		return
	}
	for _, g := range srv.cfg.Gossip.Keys {
		for _, k := range srv.cfg.ClusterKeys {
			if bytes.Equal(g, k) {
				srv.log.Warn("gossip keys are the raw cluster key lines, not derived: this shard cannot join gateways " +
					"that derive them; use cluster.DeriveKeys (or backend.Run)")
				return
			}
		}
	}
}
