package backend_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/switchyard-gw/switchyard/examples/echo"
	"github.com/switchyard-gw/switchyard/internal/poll"
)

// logBuf collects a logger's text output for tests to search.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// waitLog polls until the log holds a line with every part in it.
func (l *logBuf) waitLog(t *testing.T, parts ...string) {
	t.Helper()
	poll.Until(t, poll.Patience, func() error {
		for _, line := range strings.Split(l.String(), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return nil
			}
		}
		return fmt.Errorf("no log line with %q in:\n%s", parts, l)
	})
}

// keyFile writes a cluster key file holding secret.
func keyFile(t *testing.T, secret string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const (
	runSecret   = "run-test-cluster-secret-0123456789"
	otherSecret = "another-cluster-secret-9876543210"
)

// runShard starts Run in the background; the returned func cancels it and
// returns Run's error.
func runShard(t *testing.T, cfg backend.RunConfig) (stop func() error) {
	t.Helper()
	if cfg.Shard == "" {
		cfg.Shard = "run-1"
	}
	cfg.Link, cfg.Gossip = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Server.Gossip = &cluster.Config{Timing: cluster.FastTiming()}
	cfg.Server.JoinWarning = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- backend.Run(ctx, cfg, echo.Handler{}) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// seedNode starts a gossip member holding the keys derived from secret,
// as a gateway would.
func seedNode(t *testing.T, secret string) *cluster.Node {
	t.Helper()
	gk, _ := cluster.DeriveKeys([][]byte{[]byte(secret)})
	n, err := cluster.New(cluster.Config{Bind: "127.0.0.1:0", Keys: gk, Timing: cluster.FastTiming(),
		Meta: cluster.Meta{Role: cluster.RoleGateway, Link: "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close(context.Background()) })
	return n
}

// An unreachable seed is a WARN naming the seeds, and Run ends with the
// join error.
func TestRunWarnsUnreachableSeed(t *testing.T) {
	var logs logBuf
	seed := closedAddr(t)
	stop := runShard(t, backend.RunConfig{KeyFile: keyFile(t, runSecret), Seeds: []string{seed},
		Logger: logs.logger()})
	logs.waitLog(t, "level=WARN", "not joined after", "no seed reachable", seed)
	if err := stop(); !errors.Is(err, cluster.ErrJoin) {
		t.Fatalf("Run = %v, want ErrJoin", err)
	}
}

// A wrong cluster key: the seed answers but never lets the shard in; the
// WARN says to check the key file.
func TestRunWarnsWrongKey(t *testing.T) {
	var logs logBuf
	seed := seedNode(t, runSecret)
	stop := runShard(t, backend.RunConfig{KeyFile: keyFile(t, otherSecret), Seeds: []string{seed.Addr()},
		Logger: logs.logger()})
	logs.waitLog(t, "level=WARN", "not joined after", "check the cluster key file")
	if err := stop(); !errors.Is(err, cluster.ErrJoin) {
		t.Fatalf("Run = %v, want ErrJoin", err)
	}
	if n := len(seed.Members()); n != 1 {
		t.Fatalf("the seed sees %d members, want only itself", n)
	}
}

// The key file's lines used raw as gossip keys (not derived) are a WARN
// at New, before the shard silently fails to join.
func TestRawGossipKeysWarn(t *testing.T) {
	var logs logBuf
	raw := []byte("0123456789abcdef0123456789abcdef") // 32 bytes: a valid AES key, the wrong one
	srv, err := backend.New(backend.Config{Shard: "raw", Link: "127.0.0.1:0", ClusterKeys: [][]byte{raw},
		Handler: echo.Handler{}, Logger: logs.logger(),
		Gossip: &cluster.Config{Bind: "127.0.0.1:0", Keys: [][]byte{raw}}})
	if err != nil {
		t.Fatal(err)
	}
	_ = srv
	logs.waitLog(t, "level=WARN", "raw cluster key lines, not derived")

	var quiet logBuf
	gk, lk := cluster.DeriveKeys([][]byte{raw})
	if _, err := backend.New(backend.Config{Shard: "derived", ClusterKeys: lk, Handler: echo.Handler{},
		Logger: quiet.logger(), Gossip: &cluster.Config{Bind: "127.0.0.1:0", Keys: gk}}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(quiet.String(), "WARN") {
		t.Fatalf("derived keys warned:\n%s", quiet.String())
	}
}

// Run joins with the keys derived from the key file, and a drain request
// from a member (the admin API's shard drain) makes it drain and return.
func TestRunDrainRequested(t *testing.T) {
	var logs logBuf
	seed := seedNode(t, runSecret)
	stop := runShard(t, backend.RunConfig{KeyFile: keyFile(t, runSecret), Seeds: []string{seed.Addr()},
		Logger: logs.logger()})
	var member string
	poll.Until(t, poll.Patience, func() error {
		for _, m := range seed.Members() {
			if m.Alive && m.Meta.Role == cluster.RoleBackend && m.Meta.Shard == "run-1" {
				member = m.Name
				return nil
			}
		}
		return fmt.Errorf("the shard never joined:\n%s", &logs)
	})
	if err := seed.SendTo(member, cluster.DrainRequest); err != nil {
		t.Fatal(err)
	}
	logs.waitLog(t, "drain requested by a cluster member")
	logs.waitLog(t, "drained")
	if err := stop(); err != nil {
		t.Fatalf("Run after a drain request = %v", err)
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Fatalf("a clean run warned:\n%s", logs.String())
	}
}

func TestRunConfigErrors(t *testing.T) {
	ctx := context.Background()
	if err := backend.Run(ctx, backend.RunConfig{Shard: "x", Gossip: "127.0.0.1:0"}, echo.Handler{}); err == nil {
		t.Fatal("Run without a key file succeeded")
	}
	short := keyFile(t, "short")
	err := backend.Run(ctx, backend.RunConfig{Shard: "x", Gossip: "127.0.0.1:0", KeyFile: short}, echo.Handler{})
	if err == nil || !strings.Contains(err.Error(), "want at least 16") {
		t.Fatalf("Run with a short key = %v", err)
	}
}
