package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/switchyard-gw/switchyard/internal/config"
	"github.com/switchyard-gw/switchyard/internal/gctune"
	"github.com/switchyard-gw/switchyard/server"
)

// runGateway runs `switchyard gateway` until ctx ends (SIGINT/SIGTERM),
// then drains. SIGHUP reloads the configuration (file and environment
// again, the flags kept).
func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP) // before anything: a SIGHUP never kills the gateway
	defer signal.Stop(hup)

	def := config.DefaultGateway()
	fs, cl := commandFlags("gateway", stderr, &def)
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	src := cl.source()
	load := func() (config.Gateway, server.Config, error) {
		gc := config.DefaultGateway()
		var p config.Problems
		p.AddErr("", config.Load(&gc, src))
		cfg, err := gc.ServerConfig(version, clusterKeys)
		p.AddErr("", err)
		cfg.Commit, cfg.ConfigHash = commitID(), config.Hash(&gc)
		return gc, cfg, p.Err()
	}
	gc, cfg, err := load()
	if cl.print {
		return printConfig(stdout, &gc, err)
	}
	if err != nil {
		return err
	}
	if gc.MemProfileRate > 0 {
		runtime.MemProfileRate = gc.MemProfileRate
	}
	levels := new(slog.LevelVar)
	log := newLogger(stderr, gc.LogFormat, levels)
	wire := func(c *server.Config) {
		c.Logger, c.LevelVar = log, levels
		c.Reloader = func(context.Context) (server.Config, error) {
			_, next, err := load()
			wireNext(c, &next)
			return next, err
		}
	}
	wire(&cfg)
	// Before New: the default max_conns is derived from the file limit.
	raiseFileLimit(log)
	// Before the first listener exists: netpoll's buffers and barriers are
	// process-wide. A failure leaves netpoll working with its own defaults
	// (more memory per connection), so it is logged, not fatal.
	if err := server.TuneNetpoll(); err != nil {
		log.Error("netpoll tuning not applied: memory per connection will be higher", "err", err)
	} else {
		log.Info("netpoll tuned")
	}
	gcPolicy(log)
	g, err := server.New(cfg)
	if err != nil {
		return err
	}
	if err := g.Start(ctx); err != nil {
		return err
	}
	log.Info("switchyard gateway started", append([]any{"version", version, "commit", commitID()}, gatewaySummary(&gc)...)...)
serve:
	for ctx.Err() == nil {
		select {
		case <-hup:
			_, _ = g.Reread(ctx) // logged and counted by the gateway
		case <-g.DrainRequested(): // POST /api/v1/drain: the same drain as SIGTERM
			break serve
		case <-ctx.Done():
		}
	}
	if err := g.Close(context.Background()); err != nil {
		log.Warn("drain incomplete", "err", err)
	}
	return nil
}

// gcPolicy is the collector's policy the gateway runs with unless GOGC is
// set: GOGC follows the live heap after every collection (internal/gctune),
// Max for a small heap, down to Min for a large one, allowing at least
// Floor bytes of garbage between collections. A gateway's live heap is its
// sessions; its garbage is netpoll's (a closure and a task per read event),
// at a rate set by traffic. With Go's fixed 100 (or the 50 this binary set
// before) the heap of a gateway reading heartbeats grows to twice (1.5×)
// its live sessions between collections; the tuner keeps a gateway with
// tens of thousands of sessions within a tenth of them, and one with a few
// busy connections collects no more often than Go's default (whose own
// floor is the same 4 MB). With Floor 8 MB and Min 20, make scale's
// gateways (14,286 sessions each) still ended 5 minutes of heartbeats at
// 3,686 B per session; with these, docs/benchmarks.md "GC policy".
var gcPolicyDefault = gctune.Policy{Floor: 4 << 20, Min: 10, Max: 100}

// gcPolicy starts the GC tuner unless the operator set GOGC, and logs
// which is in force.
func gcPolicy(log *slog.Logger) {
	if v := os.Getenv("GOGC"); v != "" {
		log.Info("GC policy from the environment", "GOGC", v)
		return
	}
	p := gcPolicyDefault
	gctune.Start(p)
	log.Info("GC policy: GOGC follows the live heap", "floor_bytes", p.Floor, "min", p.Min, "max", p.Max)
}

// wireNext gives a reloaded config the running one's logger, level and
// reloader (objects, not settings).
func wireNext(cur, next *server.Config) {
	next.Logger, next.LevelVar, next.Reloader = cur.Logger, cur.LevelVar, cur.Reloader
}

// gatewaySummary is the start-up line's view of the configuration: where
// it listens and its main limits, no secret (whether auth is on, not with
// what).
func gatewaySummary(c *config.Gateway) []any {
	return []any{"listen", c.Listen, "admin", c.AdminListen, "cluster", c.Cluster.Bind != "",
		"gossip", c.Cluster.Bind, "seeds", c.Cluster.Seeds, "auth", c.AuthSecretFile != "",
		"admin_token", c.AdminTokenFile != "", "heartbeat", c.Heartbeat, "max_conns", c.MaxConns,
		"rate", c.Rate, "accept_rate", c.AcceptRate, "proxy_protocol_networks", c.ProxyNetworks,
		"link_tls", c.LinkTLSCAFile != "",
		"log_level", c.LogLevel}
}

// commandLine holds the flags every server command shares besides its
// settings.
type commandLine struct {
	file  string
	print bool
	flags *config.Flags
}

func (cl *commandLine) source() config.Source {
	return config.Source{File: cl.file, Env: os.LookupEnv, Flags: cl.flags}
}

// commandFlags defines --config, --print-config and one flag per setting
// of cfg (its defaults shown in -h).
func commandFlags(name string, stderr io.Writer, cfg any) (*flag.FlagSet, *commandLine) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cl := &commandLine{flags: config.BindFlags(fs, cfg)}
	fs.StringVar(&cl.file, "config", os.Getenv(config.EnvPrefix+"CONFIG"), "YAML configuration `file` (docs/configuration.md); environment and flags override it")
	fs.BoolVar(&cl.print, "print-config", false, "print the effective configuration (secrets as file paths) and exit")
	return fs, cl
}

// printConfig prints the effective configuration, or its problems.
func printConfig(w io.Writer, cfg any, problems error) error {
	if problems != nil {
		return problems
	}
	b, err := config.Print(cfg)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// errUsage marks a command line that could not be parsed (exit status 2).
var errUsage = errors.New("usage")

// flagError is the error of a failed fs.Parse: nil for -h.
func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return fmt.Errorf("%w: %v", errUsage, err)
}

// readSecrets reads a secret file, one secret per line.
func readSecrets(path string) ([][]byte, error) { return config.ReadSecrets(path) }

func newLogger(w io.Writer, format string, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// raiseFileLimit raises the soft limit on open files to the hard limit
// (Go does so at start-up since 1.19; done again here so that the log says
// what the gateway runs with, whatever built it) and logs both: the
// default max_conns is the soft limit minus a reserve (server.Config
// MaxConns).
func raiseFileLimit(log *slog.Logger) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		log.Warn("cannot read the open files limit", "err", err)
		return
	}
	soft := r.Cur
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			log.Warn("cannot raise the open files limit", "soft", soft, "hard", r.Max, "err", err)
			return
		}
	}
	log.Info("open files limit", "soft", soft, "raised_to", r.Cur, "hard", r.Max)
}
