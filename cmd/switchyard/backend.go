package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/switchyard-gw/switchyard/examples/counter"
	"github.com/switchyard-gw/switchyard/examples/echo"
	"github.com/switchyard-gw/switchyard/examples/rooms"
)

// apps are the example backends `switchyard backend --app` runs.
var apps = map[string]func() backend.Handler{
	"echo":    func() backend.Handler { return echo.Handler{} },
	"counter": func() backend.Handler { return counter.Handler{} },
	"rooms":   func() backend.Handler { return rooms.Handler{} },
}

// runBackend runs `switchyard backend`: one shard of an example app that
// joins the gossip and serves gateway links until ctx ends, then drains.
func runBackend(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var app, shard, link, gossip, join, keyFile, logFormat, labelList string
	var drainTimeout, checkpoint time.Duration
	fs.StringVar(&app, "app", "echo", "example app: echo, counter or rooms")
	fs.StringVar(&shard, "shard", "", "shard `name` (required, unique in the cluster)")
	fs.StringVar(&link, "link", backend.DefaultLink, "link listener `address` gateways connect to (port 0 picks one)")
	fs.StringVar(&gossip, "gossip", "", "gossip `address` (host:port, required)")
	fs.StringVar(&join, "join", "", "comma-separated gossip `addresses` of cluster members to join")
	fs.StringVar(&keyFile, "cluster-key-file", "", "`file` of cluster keys, one per line (required)")
	fs.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&labelList, "labels", "", "shard `labels` for canary rules, e.g. version=2.1,zone=a")
	fs.DurationVar(&drainTimeout, "drain-timeout", 10*time.Second, "how long a drain (SIGTERM) waits for gateways to let go of the shard's sessions")
	fs.DurationVar(&checkpoint, "checkpoint-interval", backend.DefaultCheckpoint, "a changed session's state goes to its gateway this often, against a crash of this shard (negative: never)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	newHandler, ok := apps[app]
	switch {
	case !ok:
		return fmt.Errorf("backend: unknown app %q (echo, counter, rooms)", app)
	case shard == "" || gossip == "" || keyFile == "":
		return errors.New("backend: --shard, --gossip and --cluster-key-file are required")
	}
	labels, err := parseLabels(labelList)
	if err != nil {
		return err
	}
	keys, err := readSecrets(keyFile)
	if err != nil {
		return err
	}
	log := newLogger(stderr, logFormat)
	gossipKeys, linkKeys := clusterKeys(keys)
	srv, err := backend.New(backend.Config{Shard: shard, Link: link, ClusterKeys: linkKeys, Handler: newHandler(),
		CheckpointInterval: checkpoint,
		Labels:             labels,
		Gossip:             &cluster.Config{Bind: gossip, Seeds: splitList(join), Keys: gossipKeys, Meta: cluster.Meta{Version: version}},
		Logger:             log})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-srv.DrainRequested(): // a gateway's POST /api/v1/shards/{name}/drain
	}
	dctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := srv.Drain(dctx); err != nil {
		log.Warn("drain incomplete", "err", err)
	}
	cctx, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	return srv.Close(cctx)
}
