// Command echo-shard runs one backend shard of the echo example on its
// own, the way an application runs its backend: backend.Run reads the
// cluster key file, derives the keys, joins the gossip and serves until
// SIGINT/SIGTERM or a gateway asks it to drain, then drains and exits.
//
//	echo-shard -shard echo-1 -gossip 127.0.0.1:7950 -join 127.0.0.1:7946 -cluster-key-file cluster.key
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/examples/echo"
)

func main() {
	var cfg backend.RunConfig
	cfg.RegisterFlags(flag.CommandLine)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := backend.Run(ctx, cfg, echo.Handler{}); err != nil {
		fmt.Fprintln(os.Stderr, "echo-shard:", err)
		os.Exit(1)
	}
}
