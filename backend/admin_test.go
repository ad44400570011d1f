package backend_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/backend/backendtest"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
)

// get answers a GET on the shard's admin listener: status and body.
func get(t *testing.T, addr, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// series parses a Prometheus text scrape into series → value.
func series(t *testing.T, body string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// blockingAnnouncer holds the shard's active announcement (its join)
// until release is closed.
type blockingAnnouncer struct{ release chan struct{} }

func (a blockingAnnouncer) Announce(ctx context.Context, an backend.Announcement) error {
	if an.State == backend.StateActive {
		<-a.release
	}
	return nil
}

// TestShardAdmin: the shard's admin listener serves /healthz at once,
// /readyz 200 only once the shard joined and until it drains, and
// /metrics with the bearer token only; its series move with the traffic.
func TestShardAdmin(t *testing.T) {
	const token = "s3cret-token"
	h := &recorder{}
	h.onOpen = func(s *backend.Session, r backend.OpenReason, _ []byte) error {
		if s.Device() == "refused" {
			return &backend.RejectError{Code: protocol.CodeUnavailable, Reason: "no"}
		}
		return nil
	}
	ann := blockingAnnouncer{release: make(chan struct{})}
	srv, err := backend.New(backend.Config{Shard: "a", Link: "127.0.0.1:0", ClusterKeys: [][]byte{key}, Handler: h,
		LinkTimeout: time.Minute, AdminListen: "127.0.0.1:0", AdminToken: token, Announcer: ann,
		Version: "1.2.3", Commit: "abc"})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- srv.Start(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Close(ctx)
	})
	var addr string
	poll.Until(t, 10*time.Second, func() error {
		if addr = srv.AdminAddr(); addr == "" {
			return fmt.Errorf("admin listener not bound")
		}
		return nil
	})
	if code, _ := get(t, addr, "/healthz", ""); code != http.StatusOK {
		t.Fatalf("healthz while joining: %d", code)
	}
	if code, body := get(t, addr, "/readyz", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "not joined") {
		t.Fatalf("readyz while joining: %d %s", code, body)
	}
	close(ann.release)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, addr, "/readyz", ""); code != http.StatusOK {
		t.Fatalf("readyz once joined: %d %s", code, body)
	}
	for _, tok := range []string{"", "wrong"} {
		if code, _ := get(t, addr, "/metrics", tok); code != http.StatusUnauthorized {
			t.Fatalf("metrics with token %q: %d, want 401", tok, code)
		}
	}
	scrape := func() map[string]float64 {
		t.Helper()
		code, body := get(t, addr, "/metrics", token)
		if code != http.StatusOK {
			t.Fatalf("metrics: %d", code)
		}
		return series(t, body)
	}
	m := scrape()
	if m[`switchyard_build_info{version="1.2.3",commit="abc",goversion="`+runtime.Version()+`"}`] != 1 ||
		m[`switchyard_shard_info{shard="a"}`] != 1 {
		t.Fatalf("no build info in %v", m)
	}

	g := backendtest.Dial(t, srv.Addr(), key, "gw-1")
	sid := backendtest.SID(1)
	openSession(t, g, sid, "dev-1", 0, backendtest.OpenOpts{})
	g.Up(sid, 1, 2, true, "gap") // seq 2 before 1: dropped as a gap
	g.Up(sid, 1, 1, true, "m1")
	ackThrough(t, g, sid, 1)
	g.Open(backendtest.SID(2), "refused", 0, backendtest.OpenOpts{})
	g.Expect(protocol.LinkRefused)
	poll.Until(t, 10*time.Second, func() error {
		m = scrape()
		for s, want := range map[string]float64{
			`switchyard_shard_dropped_total{reason="gap"}`:                      1,
			`switchyard_shard_handler_calls_total{call="message"}`:              1,
			`switchyard_shard_handler_seconds_count{call="message"}`:            1,
			`switchyard_shard_handler_calls_total{call="open"}`:                 2,
			`switchyard_shard_handler_errors_total{call="open"}`:                1,
			`switchyard_shard_up_delivered_total`:                               1,
			`switchyard_shard_sessions_opened_total`:                            1,
			`switchyard_shard_links`:                                            1,
			`switchyard_shard_sessions`:                                         1,
			`switchyard_shard_ready`:                                            1,
			`switchyard_shard_handler_seconds_bucket{call="message",le="+Inf"}`: 1,
		} {
			if m[s] != want {
				return fmt.Errorf("%s = %v, want %v", s, m[s], want)
			}
		}
		return nil
	})
	if _, ok := m["switchyard_shard_link_queue_bytes"]; !ok {
		t.Fatal("no switchyard_shard_link_queue_bytes")
	}
	if m["process_open_fds"] < 1 || m["process_max_fds"] < m["process_open_fds"] {
		t.Fatalf("process fds: %v open, %v max", m["process_open_fds"], m["process_max_fds"])
	}

	g.Control(protocol.LinkClose, sid, 1, 0, "bye")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, addr, "/readyz", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Fatalf("readyz while draining: %d %s", code, body)
	}
	if m := scrape(); m["switchyard_shard_ready"] != 0 {
		t.Fatal("switchyard_shard_ready stayed 1 while draining")
	}
}

// TestStatSeriesCoverStats: every Stats field is exported as a series
// (a counter added to Stats without one fails here): each field gets a
// value of its own and every value must appear in the scrape of a
// Server whose Stats are those.
func TestStatSeriesCoverStats(t *testing.T) {
	var st backend.Stats
	v := reflect.ValueOf(&st).Elem()
	want := map[float64]string{}
	for i := range v.NumField() {
		n := 1000 + i
		switch f := v.Field(i); f.Kind() {
		case reflect.Int64:
			f.SetInt(int64(n))
		case reflect.Uint64:
			f.SetUint(uint64(n))
		default:
			t.Fatalf("Stats.%s: a %v", v.Type().Field(i).Name, f.Kind())
		}
		want[float64(n)] = v.Type().Field(i).Name
	}
	got := map[float64]bool{}
	for _, val := range backend.StatSeriesValues(&st) {
		got[val] = true
	}
	for n, field := range want {
		if !got[n] {
			t.Errorf("Stats.%s has no series (backend/metrics.go statSeries)", field)
		}
	}
}
