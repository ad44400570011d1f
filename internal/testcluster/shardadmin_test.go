package testcluster

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/switchyard-gw/switchyard/internal/poll"
)

// TestProcsShardAdmin: `switchyard backend` serves its admin listener
// (--admin, --admin-token-file): /healthz and /readyz without the token,
// 200 once the shard is in the cluster; /metrics only with it, with the
// build's version and commit in switchyard_build_info and the shard's
// series.
func TestProcsShardAdmin(t *testing.T) {
	const token = "shard-admin-token-0123456789"
	p, _ := convergedProcs(t, Options{Gateways: 1, Shards: 1, ShardFlags: []string{"--admin-token-file", writeToken(t, token)}},
		2*poll.Patience)
	admin := p.Shard(0).Admin
	get := func(path, tok string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+admin+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz", ""); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
	poll.Until(t, poll.Patience, func() error {
		if code, body := get("/readyz", ""); code != http.StatusOK {
			return fmt.Errorf("readyz: %d %s", code, body)
		}
		return nil
	})
	if code, _ := get("/metrics", "wrong"); code != http.StatusUnauthorized {
		t.Fatalf("metrics with a wrong token: %d, want 401", code)
	}
	code, body := get("/metrics", token)
	if code != http.StatusOK {
		t.Fatalf("metrics: %d", code)
	}
	for _, want := range []string{`switchyard_build_info{version="`, `switchyard_shard_ready 1`,
		`switchyard_shard_links `, `switchyard_shard_handler_seconds_bucket{call="message",le="`} {
		if !strings.Contains(body, want) {
			t.Errorf("shard /metrics lacks %q", want)
		}
	}
	if strings.Contains(body, `commit=""`) {
		t.Error("switchyard_build_info has no commit")
	}
}
