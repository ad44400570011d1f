package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/examples/counter"
	"github.com/switchyard-gw/switchyard/examples/echo"
	"github.com/switchyard-gw/switchyard/examples/rooms"
	"github.com/switchyard-gw/switchyard/internal/config"
)

// apps are the example backends `switchyard backend --app` runs.
var apps = map[string]func() backend.Handler{
	"echo":    func() backend.Handler { return echo.Handler{} },
	"counter": func() backend.Handler { return counter.Handler{} },
	"rooms":   func() backend.Handler { return rooms.Handler{} },
}

// runBackend runs `switchyard backend`: one shard of an example app that
// joins the gossip and serves gateway links until ctx ends, then drains.
// SIGHUP reloads its log level and cluster keys; other changed settings
// are logged as needing a restart.
func runBackend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	def := config.DefaultBackend()
	fs, cl := commandFlags("backend", stderr, &def)
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	src := cl.source()
	load := func() (config.Backend, backend.Config, [][]byte, error) {
		bc := config.DefaultBackend()
		var p config.Problems
		p.AddErr("", config.Load(&bc, src))
		cfg, gossipKeys, err := bc.BackendConfig(version, clusterKeys, apps)
		p.AddErr("", err)
		return bc, cfg, gossipKeys, p.Err()
	}
	bc, cfg, _, err := load()
	if cl.print {
		return printConfig(stdout, &bc, err)
	}
	if err != nil {
		return err
	}
	levels := new(slog.LevelVar)
	level, _ := config.ParseLevel(bc.LogLevel)
	levels.Set(level)
	log := newLogger(stderr, bc.LogFormat, levels)
	cfg.Logger = log
	cfg.Commit = commitID()
	srv, err := backend.New(cfg)
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	log.Info("switchyard backend started", "version", version, "commit", commitID(), "app", bc.App, "shard", bc.Shard,
		"link", srv.Addr(), "admin", srv.AdminAddr(), "gossip", bc.Cluster.Bind, "seeds", bc.Cluster.Seeds, "link_timeout", bc.LinkTimeout,
		"link_tls", bc.LinkTLSCertFile != "", "link_tls_mutual", bc.LinkTLSCAFile != "", "log_level", bc.LogLevel)
	running := shardState{cfg: bc, keys: cfg.ClusterKeys}
serve:
	for ctx.Err() == nil {
		select {
		case <-hup:
			running = reloadBackend(log, levels, srv, running, load)
		case <-srv.DrainRequested(): // a gateway's POST /api/v1/shards/{name}/drain
			break serve
		case <-ctx.Done():
		}
	}
	bc = running.cfg
	dctx, cancel := context.WithTimeout(context.Background(), bc.DrainTimeout)
	defer cancel()
	if err := srv.Drain(dctx); err != nil {
		log.Warn("drain incomplete", "err", err)
	}
	cctx, cancel2 := context.WithTimeout(context.Background(), bc.CloseTimeout)
	defer cancel2()
	return srv.Close(cctx)
}

// shardState is what a shard runs with: its configuration and the link
// keys read from its key file.
type shardState struct {
	cfg  config.Backend
	keys [][]byte
}

// reloadBackend applies a SIGHUP to a shard: the log level and the cluster
// keys (links and gossip keyring) change live; any other changed key is
// logged as needing a restart and kept as it runs. A configuration that
// does not validate changes nothing. It returns what now runs.
func reloadBackend(log *slog.Logger, levels *slog.LevelVar, srv *backend.Server, cur shardState,
	load func() (config.Backend, backend.Config, [][]byte, error)) shardState {
	next, cfg, gossipKeys, err := load()
	if err != nil {
		log.Error("configuration reload refused: running configuration kept", "err", err)
		return cur
	}
	changed, restart := config.Diff(&cur.cfg, &next)
	if !slices.EqualFunc(cur.keys, cfg.ClusterKeys, bytes.Equal) {
		if err := srv.SetClusterKeys(cfg.ClusterKeys, gossipKeys); err != nil {
			log.Error("configuration reload failed: cluster keys not changed", "err", err)
			return cur
		}
		changed = append(changed, "cluster_keys")
		cur.keys = cfg.ClusterKeys
	}
	level, _ := config.ParseLevel(next.LogLevel)
	levels.Set(level)
	cur.cfg.LogLevel, cur.cfg.ClusterKeyFile = next.LogLevel, next.ClusterKeyFile
	log.Info("configuration reloaded", "changed", changed, "restart_required", restart)
	return cur
}
