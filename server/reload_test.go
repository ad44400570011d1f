package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/switchyard-gw/switchyard/protocol"
	"github.com/switchyard-gw/switchyard/router"
)

// freePorts sets the listeners startGateway would, so that a reload of
// the same cfg changes no listener.
func freePorts(cfg Config) Config {
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	return cfg
}

// burst is n best-effort DATA frames in one write.
func burst(n int) []byte {
	var b []byte
	for range n {
		b = protocol.AppendFrame(b, protocol.TypeData, 0, 0, []byte("x"))
	}
	return b
}

// echoes reads n echoed DATA frames, failing on anything else.
func (d *dev) echoes(n int) {
	d.t.Helper()
	for i := range n {
		if f := d.read(); f.Type != protocol.TypeData {
			d.t.Fatalf("frame %d: got %v %s", i, f.Type, errText(f))
		}
	}
}

// TestReloadRateLimit: a device sending bursts the configured rate allows
// gets 429 once a reload lowers the rate, on the same connection, and is
// served again when a second reload raises it.
func TestReloadRateLimit(t *testing.T) {
	cfg := freePorts(Config{Rate: -1, RateBurst: 100})
	g := startGateway(t, cfg)
	d := dial(t, g)
	d.hello(protocol.Hello{ID: "chatty"})
	d.write(burst(50))
	d.echoes(50)

	cfg.Rate, cfg.RateBurst = 1, 5
	rep, err := g.Reload(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Changed, []string{"rate", "rate_burst"}) || len(rep.RestartRequired) != 0 {
		t.Fatalf("report %+v", rep)
	}
	d.write(burst(50))
	d.expectError(protocol.CodeRateLimited, false)

	cfg.Rate, cfg.RateBurst = -1, 100
	if _, err := g.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	d.send(protocol.TypePing, 0, 0, nil) // the connection is still up
	waitFor(t, "reloads counted", func() bool { return g.metrics.reloads[resultOK].Get() == 2 })
	if n := g.metrics.disconnects[reasonRateLimit].Get(); n != 0 {
		t.Fatalf("%d rate-limit disconnects", n)
	}
}

// TestReloadAuthSecrets: a device whose token the old secret refuses is
// admitted once a reload installs its secret, and a device signed with the
// removed secret is refused; a device already connected stays.
func TestReloadAuthSecrets(t *testing.T) {
	oldKey, newKey := []byte("old-secret"), []byte("new-secret")
	cfg := freePorts(Config{AuthSecrets: [][]byte{oldKey}})
	g := startGateway(t, cfg)
	token := func(k []byte, id string) string { return protocol.MakeToken(k, id, time.Now().Add(time.Hour)) }
	up := dial(t, g)
	up.hello(protocol.Hello{ID: "up", Token: token(oldKey, "up")})

	d := dial(t, g)
	p, _ := protocol.EncodeHello(&protocol.Hello{V: 1, ID: "d1", Token: token(newKey, "d1")})
	d.send(protocol.TypeHello, 0, 0, p)
	d.expectError(protocol.CodeUnauthorized, true)

	cfg.AuthSecrets = [][]byte{newKey}
	if rep, err := g.Reload(cfg); err != nil || !slices.Equal(rep.Changed, []string{"auth_secrets"}) {
		t.Fatalf("report %+v, %v", rep, err)
	}
	dial(t, g).hello(protocol.Hello{ID: "d1", Token: token(newKey, "d1")})
	old := dial(t, g)
	p, _ = protocol.EncodeHello(&protocol.Hello{V: 1, ID: "d2", Token: token(oldKey, "d2")})
	old.send(protocol.TypeHello, 0, 0, p)
	old.expectError(protocol.CodeUnauthorized, true)
	up.write(burst(1))
	up.echoes(1)
}

// TestReloadResumeKeys: a resume token signed before a rotation that keeps
// the old key second still resumes; after the old key is dropped it no
// longer verifies (the device gets a new session).
func TestReloadResumeKeys(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte("1"), 16), bytes.Repeat([]byte("2"), 16)
	cfg := freePorts(Config{ClusterKeys: [][]byte{k1}})
	g := startGateway(t, cfg)
	d := dial(t, g)
	w := d.hello(protocol.Hello{ID: "r"})
	d.nc.Close()

	cfg.ClusterKeys = [][]byte{k2, k1}
	if _, err := g.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	d = dial(t, g)
	w2 := d.hello(protocol.Hello{ID: "r", Resume: w.Resume})
	if !w2.Resumed {
		t.Fatal("token signed with the old key did not resume after the rotation")
	}
	d.nc.Close()

	cfg.ClusterKeys = [][]byte{k2}
	if _, err := g.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	d = dial(t, g)
	if w3 := d.hello(protocol.Hello{ID: "r", Resume: w.Resume}); w3.Resumed {
		t.Fatal("token signed with a removed key still resumed")
	}
}

// TestReloadInvalidKeepsRunning: a configuration that fails validation
// changes nothing, says why and is counted as invalid.
func TestReloadInvalidKeepsRunning(t *testing.T) {
	cfg := freePorts(Config{Rate: -1})
	g := startGateway(t, cfg)
	bad := cfg
	bad.Rate, bad.Heartbeat = 1, 1500*time.Millisecond
	if _, err := g.Reload(bad); err == nil || !strings.Contains(err.Error(), "heartbeat") {
		t.Fatalf("got %v, want the heartbeat problem", err)
	}
	if g.live.Load().ratePerTick >= 0 || g.metrics.reloads[resultInvalid].Get() != 1 {
		t.Fatal("an invalid reload changed the rate or was not counted")
	}
}

// TestReloadRestartRequired: changed settings that cannot change live are
// reported and not applied, and reported again by the next reload.
func TestReloadRestartRequired(t *testing.T) {
	cfg := freePorts(Config{})
	g := startGateway(t, cfg)
	next := cfg
	next.MaxFrame, next.Heartbeat, next.AcceptBurst = 8192, time.Minute, 7
	for range 2 {
		rep, err := g.Reload(next)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rep.RestartRequired, []string{"heartbeat", "max_frame"}) {
			t.Fatalf("restart required %v", rep.RestartRequired)
		}
		if g.running.MaxFrame != protocol.DefaultMaxFrame || g.running.Heartbeat != DefaultHeartbeat || g.running.AcceptBurst != 7 {
			t.Fatalf("applied: max frame %d heartbeat %v accept burst %d", g.running.MaxFrame, g.running.Heartbeat, g.running.AcceptBurst)
		}
	}
}

// TestReloadEndpoint: POST /api/v1/reload answers the Reloader's reload as
// {"changed","restart_required"} with 200, a failed one as {"error"} with
// 422, and needs the bearer token.
func TestReloadEndpoint(t *testing.T) {
	var mu sync.Mutex
	var next Config
	var loadErr error
	cfg := freePorts(Config{AdminToken: "tok"})
	cfg.Reloader = func(context.Context) (Config, error) {
		mu.Lock()
		defer mu.Unlock()
		return next, loadErr
	}
	g := startGateway(t, cfg)
	post := func(token string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+g.AdminAddr()+"/api/v1/reload", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	mu.Lock()
	next = cfg
	next.Rate, next.Listen = 5, "127.0.0.1:1"
	mu.Unlock()
	code, body := post("tok")
	if code != http.StatusOK || !slices.Equal(strs(body["changed"]), []string{"rate"}) ||
		!slices.Equal(strs(body["restart_required"]), []string{"listen"}) {
		t.Fatalf("%d %v", code, body)
	}
	mu.Lock()
	loadErr = errors.New("gateway.yaml: line 3: bad")
	mu.Unlock()
	if code, body := post("tok"); code != http.StatusUnprocessableEntity || !strings.Contains(body["error"].(string), "line 3") {
		t.Fatalf("%d %v", code, body)
	}
	if code, _ := post("wrong"); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", code)
	}
	if g.metrics.reloads[resultOK].Get() != 1 || g.metrics.reloads[resultInvalid].Get() != 1 {
		t.Fatal("reloads not counted")
	}
}

func strs(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

// TestReloadLogLevel: the level follows LogLevel through LevelVar.
func TestReloadLogLevel(t *testing.T) {
	lv := new(slog.LevelVar)
	cfg := freePorts(Config{LevelVar: lv, LogLevel: slog.LevelWarn})
	g := startGateway(t, cfg)
	if lv.Level() != slog.LevelWarn {
		t.Fatalf("level %v at start", lv.Level())
	}
	cfg.LogLevel = slog.LevelDebug
	if rep, err := g.Reload(cfg); err != nil || !slices.Equal(rep.Changed, []string{"log_level"}) {
		t.Fatalf("%+v %v", rep, err)
	}
	if lv.Level() != slog.LevelDebug {
		t.Fatalf("level %v after reload", lv.Level())
	}
}

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{"GoAwayRetry": "go_away_retry", "ResumeTokenTTL": "resume_token_ttl",
		"MaxConns": "max_conns", "LinkKeys": "link_keys", "Rate": "rate"} {
		if got := snake(in); got != want {
			t.Errorf("snake(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestReloadKeysError: gossip keys given to a gateway whose gossip started
// without encryption cannot be installed: the reload is an error, the keys
// are not reported as changed, the rest is applied, and the next reload
// tries again.
func TestReloadKeysError(t *testing.T) {
	cfg := freePorts(Config{LinkKeys: [][]byte{fakeShardKey},
		Cluster: &ClusterConfig{Name: "gw-keys", Bind: "127.0.0.1:0", Timing: cluster.FastTiming()}})
	g := startGateway(t, cfg)
	next := cfg
	c := *cfg.Cluster
	c.Keys = [][]byte{testGossipKey}
	next.Cluster, next.Rate = &c, 7
	for range 2 {
		rep, err := g.Reload(next)
		if err == nil || slices.Contains(rep.Changed, "cluster.keys") {
			t.Fatalf("report %+v, %v: want an error and no cluster.keys", rep, err)
		}
	}
	if g.metrics.reloads[resultError].Get() != 2 || g.running.Rate != 7 {
		t.Fatalf("errors %d, rate %v", g.metrics.reloads[resultError].Get(), g.running.Rate)
	}
}

// TestReloadEndpointPartial: a reload through the API that passed
// validation but could not install a change (gossip keys on a gateway
// whose gossip started without encryption) is answered 500 with what was
// applied all the same, not 422 "refused", which would tell the operator
// that nothing changed while the rate did.
func TestReloadEndpointPartial(t *testing.T) {
	cfg := freePorts(Config{LinkKeys: [][]byte{fakeShardKey}, AdminToken: "tok",
		Cluster: &ClusterConfig{Name: "gw-partial", Bind: "127.0.0.1:0", Timing: cluster.FastTiming()}})
	next := cfg
	c := *cfg.Cluster
	c.Keys = [][]byte{testGossipKey}
	next.Cluster, next.Rate = &c, 7
	cfg.Reloader = func(context.Context) (Config, error) { return next, nil }
	g := startGateway(t, cfg)
	code, body := api(t, g, http.MethodPost, "/api/v1/reload", "tok", "")
	var got ReloadFailure
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%d %s: %v", code, body, err)
	}
	if code != http.StatusInternalServerError || !slices.Equal(got.Changed, []string{"rate"}) ||
		!strings.Contains(got.Error, "without encryption") || !strings.Contains(got.Error, "applied all the same: rate") {
		t.Fatalf("%d %s: want 500 with the error and changed [rate]", code, body)
	}
	if g.running.Rate != 7 {
		t.Fatalf("rate %v: the rest of the reload was not applied", g.running.Rate)
	}
}

// TestReloadCanary: canary rules reload live (SetRules), the admin API
// shows the reloaded configuration's hash, and a bad rule set is refused
// with the running rules kept.
func TestReloadCanary(t *testing.T) {
	cfg := freePorts(Config{LinkKeys: [][]byte{fakeShardKey}, ConfigHash: "one",
		Cluster: &ClusterConfig{Name: "gw-canary", Bind: "127.0.0.1:0", Timing: cluster.FastTiming()}})
	g := startGateway(t, cfg)
	next := cfg
	next.Canary, next.ConfigHash = []router.Rule{testRule}, "two"
	rep, err := g.Reload(next)
	if err != nil || !slices.Contains(rep.Changed, "canary") || len(rep.RestartRequired) != 0 {
		t.Fatalf("report %+v, %v", rep, err)
	}
	if got := g.Rules(); len(got) != 1 || got[0].Name != testRule.Name {
		t.Fatalf("rules after reload: %+v", got)
	}
	if h := *g.adm.configHash.Load(); h != "two" {
		t.Fatalf("config hash %q after reload", h)
	}
	bad := next
	bad.Canary = []router.Rule{{Name: "x", Percent: 0, Labels: map[string]string{"v": "1"}}}
	if _, err := g.Reload(bad); err == nil {
		t.Fatal("a bad rule set reloaded")
	}
	if got := g.Rules(); len(got) != 1 || got[0].Name != testRule.Name {
		t.Fatalf("rules after a refused reload: %+v", got)
	}
	next.Canary = nil
	if rep, err := g.Reload(next); err != nil || !slices.Contains(rep.Changed, "canary") || len(g.Rules()) != 0 {
		t.Fatalf("removing the rules: %+v, %v, %+v", rep, err, g.Rules())
	}
}
