package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/examples/echo"
	"github.com/switchyard-gw/switchyard/internal/config"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/internal/testpki"
	"github.com/switchyard-gw/switchyard/server"
)

// logBuffer is a log destination the test reads while servers write.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// linkTLS is config.LinkTLS (the files the command reads), failing the test
// on error.
func linkTLS(t *testing.T, cert, key, ca string, server bool) *tls.Config {
	t.Helper()
	cfg, err := config.LinkTLS(cert, key, ca, server)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// metricValue is the value of one series (labels included) on a
// /metrics page, or -1 when absent.
func metricValue(t *testing.T, url, series string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if name, v, ok := strings.Cut(sc.Text(), " "); ok && name == series {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// TestLinkTLS: a gateway and a shard with link TLS on (mutual: each
// presents a certificate the cluster's CA signed) carry a session end to
// end. A gateway without link TLS, one that trusts another CA, and one
// without a certificate of its own cannot link to that shard, nor a TLS
// gateway to a plain shard: each fails with a logged cause and a counter
// on the side that could tell, and its devices get 503.
func TestLinkTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.New(t, dir, "cluster")
	shardCert, shardKey := ca.Issue(t, dir, "s1", "127.0.0.1")
	gwCert, gwKey := ca.Issue(t, dir, "gw1", "gw1.example")
	var shardLog logBuffer
	s := startShard(t, backend.Config{Shard: "s1", Link: "127.0.0.1:0", ClusterKeys: [][]byte{linkKey},
		Handler: echo.Handler{}, LinkTLS: linkTLS(t, shardCert, shardKey, ca.File, true), Logger: shardLog.logger()})
	ctx, cancel := context.WithTimeout(context.Background(), poll.Patience)
	defer cancel()

	t.Run("end to end", func(t *testing.T) {
		g := gateway(t, server.Config{Backends: staticDir{s.Shard(), s.Addr()}, LinkKeys: [][]byte{linkKey},
			LinkTLS: linkTLS(t, gwCert, gwKey, ca.File, false)})
		c := dial(t, client.Config{Addr: g.Addr().String(), ID: "over-tls"})
		for _, p := range []string{"one", "two"} {
			if err := c.Send(ctx, []byte(p), true); err != nil {
				t.Fatal(err)
			}
			if m, err := c.Recv(ctx); err != nil || string(m.Payload) != p {
				t.Fatalf("echo of %q: %+v %v", p, m, err)
			}
		}
		if n := s.Stats().LinkTLSFailures; n != 0 {
			t.Fatalf("%d TLS failures on the shard", n)
		}
	})

	refused := func(t *testing.T, cfg server.Config, id string) (*server.Gateway, *logBuffer) {
		t.Helper()
		var log logBuffer
		cfg.Backends, cfg.LinkKeys, cfg.Logger, cfg.AdminListen = staticDir{s.Shard(), s.Addr()}, [][]byte{linkKey}, log.logger(), "127.0.0.1:0"
		g := gateway(t, cfg)
		_, err := client.Dial(ctx, client.Config{Addr: g.Addr().String(), ID: id, DisableReconnect: true})
		if !errors.Is(err, client.ErrUnavailable) {
			t.Fatalf("dial: %v, want 503", err)
		}
		return g, &log
	}

	t.Run("gateway without link TLS", func(t *testing.T) {
		before := s.Stats().LinkTLSFailures
		_, log := refused(t, server.Config{}, "plain")
		waitFor(t, "the shard's counter and log line", func() bool {
			return s.Stats().LinkTLSFailures > before &&
				strings.Contains(shardLog.String(), `msg="link refused: TLS handshake failed"`) &&
				strings.Contains(shardLog.String(), "first record does not look like a TLS handshake")
		})
		waitFor(t, "the gateway's log line", func() bool {
			return strings.Contains(log.String(), "does it require link TLS?")
		})
	})

	t.Run("gateway trusting another CA", func(t *testing.T) {
		other := testpki.New(t, dir, "other")
		g, log := refused(t, server.Config{LinkTLS: linkTLS(t, "", "", other.File, false)}, "other-ca")
		url := "http://" + g.AdminAddr() + "/metrics"
		waitFor(t, "the gateway's counter and log line", func() bool {
			return metricValue(t, url, `switchyard_link_tls_failures_total{shard="s1"}`) >= 1 &&
				strings.Contains(log.String(), "TLS handshake") && strings.Contains(log.String(), "certificate signed by unknown authority")
		})
	})

	t.Run("TLS gateway against a plain shard", func(t *testing.T) {
		plain := startShard(t, backend.Config{Shard: "s2", Link: "127.0.0.1:0", ClusterKeys: [][]byte{linkKey}, Handler: echo.Handler{}})
		var log logBuffer
		g := gateway(t, server.Config{Backends: staticDir{plain.Shard(), plain.Addr()}, LinkKeys: [][]byte{linkKey},
			LinkTLS: linkTLS(t, gwCert, gwKey, ca.File, false), Logger: log.logger(), AdminListen: "127.0.0.1:0"})
		_, err := client.Dial(ctx, client.Config{Addr: g.Addr().String(), ID: "tls-to-plain", DisableReconnect: true})
		if !errors.Is(err, client.ErrUnavailable) {
			t.Fatalf("dial: %v, want 503", err)
		}
		url := "http://" + g.AdminAddr() + "/metrics"
		waitFor(t, "the gateway's counter and log line", func() bool {
			return metricValue(t, url, `switchyard_link_tls_failures_total{shard="s2"}`) >= 1 &&
				strings.Contains(log.String(), "TLS handshake")
		})
	})

	t.Run("gateway without a certificate", func(t *testing.T) {
		before := s.Stats().LinkTLSFailures
		_, log := refused(t, server.Config{LinkTLS: linkTLS(t, "", "", ca.File, false)}, "no-cert")
		waitFor(t, "the shard's counter and the gateway's log line", func() bool {
			return s.Stats().LinkTLSFailures > before && strings.Contains(log.String(), "certificate required")
		})
	})
}
