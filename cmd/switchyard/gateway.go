package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/switchyard-gw/switchyard/server"
)

// runGateway runs `switchyard gateway` until ctx ends (SIGINT/SIGTERM), then
// drains.
func runGateway(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg server.Config
	var secretFile, keyFile, logFormat, redirects, gossip, join string
	var hb, memProfileRate int
	fs.StringVar(&cfg.Listen, "listen", server.DefaultListen, "device listener `address` (port 0 picks one)")
	fs.StringVar(&cfg.AdminListen, "admin", server.DefaultAdminListen, "admin HTTP `address`; - disables")
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "bearer `token` the admin API requires (none when empty)")
	fs.StringVar(&cfg.Node, "node", "", "node `name` sent in WELCOME (default: host name)")
	fs.StringVar(&secretFile, "auth-secret-file", "", "`file` of auth secrets, one per line; auth is on when given")
	fs.StringVar(&keyFile, "cluster-key-file", "", "`file` of cluster keys, one per line, at least 16 bytes each: they encrypt gossip, authenticate backend links and sign resume tokens (default: a random resume key per process)")
	fs.StringVar(&gossip, "gossip", "", "gossip `address` (host:port); when set the gateway joins the cluster and sends sessions to backend shards instead of the embedded echo")
	fs.StringVar(&join, "join", "", "comma-separated gossip `addresses` of cluster members to join")
	fs.IntVar(&hb, "heartbeat", int(server.DefaultHeartbeat/time.Second), "heartbeat interval in `seconds` (idle close after 3x)")
	fs.DurationVar(&cfg.HandshakeTimeout, "handshake-timeout", server.DefaultHandshakeTimeout, "time allowed for the first frame (HELLO)")
	fs.IntVar(&cfg.MaxConns, "max-conns", server.DefaultMaxConns, "maximum device connections")
	fs.IntVar(&cfg.MaxFrame, "max-frame", 65536, "largest DATA payload in `bytes`")
	fs.Float64Var(&cfg.Rate, "rate", server.DefaultRate, "frames/s per device, sustained (negative: unlimited)")
	fs.IntVar(&cfg.RateBurst, "rate-burst", server.DefaultRateBurst, "frames per device at once")
	fs.Float64Var(&cfg.AcceptRate, "accept-rate", server.DefaultAcceptRate, "new connections/s for the gateway (negative: unlimited)")
	fs.IntVar(&cfg.AcceptBurst, "accept-burst", server.DefaultAcceptBurst, "new connections at once")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", server.DefaultDrainTimeout, "how long a drain (SIGTERM) may take")
	fs.DurationVar(&cfg.GoAwayRetry, "goaway-retry", server.DefaultGoAwayRetry, "how long a device is served after GOAWAY (retry_ms)")
	fs.StringVar(&redirects, "redirect", "", "comma-separated device `addresses` of other gateways offered in GOAWAY")
	fs.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	fs.IntVar(&memProfileRate, "mem-profile-rate", 0, "debug: runtime.MemProfileRate (1 records every allocation for /debug/pprof/heap; 0 keeps Go's default)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if memProfileRate > 0 {
		runtime.MemProfileRate = memProfileRate
	}
	cfg.Heartbeat = time.Duration(hb) * time.Second
	if redirects != "" {
		cfg.Redirects = strings.Split(redirects, ",")
	}
	var err error
	if secretFile != "" {
		if cfg.AuthSecrets, err = readSecrets(secretFile); err != nil {
			return err
		}
	}
	var keys [][]byte
	if keyFile != "" {
		if keys, err = readSecrets(keyFile); err != nil {
			return err
		}
		cfg.ClusterKeys = keys
	}
	cfg.Logger = newLogger(stderr, logFormat)
	if gossip != "" {
		if len(keys) == 0 {
			return errors.New("gateway: --gossip needs --cluster-key-file")
		}
		gossipKeys, linkKeys := clusterKeys(keys)
		cfg.Cluster = &server.ClusterConfig{Bind: gossip, Seeds: splitList(join), Keys: gossipKeys}
		cfg.LinkKeys = linkKeys
	}
	cfg.Version, cfg.Commit = version, commitID()
	g, err := server.New(cfg)
	if err != nil {
		return err
	}
	if err := g.Start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-g.DrainRequested(): // POST /api/v1/drain: the same drain as SIGTERM
	}
	if err := g.Close(context.Background()); err != nil {
		cfg.Logger.Warn("drain incomplete", "err", err)
	}
	return nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// readSecrets reads one secret per line; blank lines are skipped and line
// endings are not part of a secret.
func readSecrets(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read secrets: %w", err)
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if line := bytes.TrimRight(sc.Bytes(), "\r"); len(line) > 0 {
			out = append(out, append([]byte(nil), line...))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("read secrets: %s holds no secret", path)
	}
	return out, nil
}

func newLogger(w io.Writer, format string) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}
