package prometheus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/internal/promq"
	"github.com/switchyard-gw/switchyard/internal/testcluster"
)

// dashboardPath is the dashboard whose queries the test runs.
const dashboardPath = "../grafana/switchyard.json"

// rateInterval stands for Grafana's $__rate_interval: with a 1 s scrape
// interval, 30 s holds plenty of samples and a few handshakes.
const rateInterval = "30s"

// TestPrometheus: a real Prometheus scrapes two gateways and two shards
// (processes) under a little load; the key series answer through its
// query API, every panel query of deploy/grafana/switchyard.json and
// every alert expression of alerts.yml runs without error (the panels with
// data, the alerts silent on this healthy cluster), Prometheus evaluates
// every rule without error, and `promtool check rules alerts.yml` passes.
func TestPrometheus(t *testing.T) {
	prom, promtool := binaries(t)
	if out, err := exec.Command(promtool, "check", "rules", "alerts.yml").CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules alerts.yml: %v\n%s", err, out)
	}
	panels, err := promq.LoadDashboard(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := promq.LoadRules("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}

	plotDir := os.Getenv("SWITCHYARD_DASHBOARD_SVG")
	p := testcluster.NewProcs(t, testcluster.Options{Gateways: 2, Shards: 2, App: "counter"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*poll.Patience)
	defer cancel()
	if err := p.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	pc := startPrometheus(t, prom, scrapeConfig(t, p))

	// Every target up before any device: the handshakes then fall inside
	// the rate window of the first queries.
	check(t, pc, "up", `up{job=~"switchyard-.*"}`, func(s []promq.Sample) error {
		return all(s, 4, func(v float64) bool { return v == 1 })
	})
	devices := 6
	if plotDir != "" {
		devices = 24
	}
	startLoad(t, p, devices)

	for _, c := range []struct {
		name, expr string
		ok         func([]promq.Sample) error
	}{
		{"sessions", `sum(switchyard_sessions{job="switchyard-gateway"})`, atLeast(float64(devices))},
		{"DATA frames received", `sum(switchyard_frames_received_total{type="DATA"})`, atLeast(1)},
		{"DATA frames sent", `sum(switchyard_frames_sent_total{type="DATA"})`, atLeast(1)},
		{"frames by type", `count(sum by (type) (switchyard_frames_received_total))`, atLeast(5)},
		{"handshakes ok", `sum(switchyard_handshake_results_total{result="ok"})`, atLeast(float64(devices))},
		{"build_info", `switchyard_build_info`, func(s []promq.Sample) error {
			return all(s, 4, func(v float64) bool { return v == 1 })
		}},
		{"ring_shards", `switchyard_ring_shards`, func(s []promq.Sample) error {
			return all(s, 2, func(v float64) bool { return v == 2 })
		}},
		{"one ring fingerprint", `count(count by (fingerprint) (switchyard_ring_info))`, exactly(1)},
		{"cluster_members", `switchyard_cluster_members{role="backend",state="active"}`, func(s []promq.Sample) error {
			return all(s, 2, func(v float64) bool { return v == 2 })
		}},
		{"shard sessions", `sum(switchyard_shard_sessions)`, atLeast(float64(devices))},
		{"shard handler calls", `sum(switchyard_shard_handler_calls_total{call="message"})`, atLeast(1)},
		{"shard_info", `count(switchyard_shard_info)`, exactly(2)},
		{"handshake p99", `histogram_quantile(0.99, sum by (le) (rate(switchyard_handshake_duration_seconds_bucket[30s])))`, positive},
		{"batch p99", `histogram_quantile(0.99, sum by (le) (rate(switchyard_batch_handle_seconds_bucket[30s])))`, positive},
		{"frames per batch p50", `histogram_quantile(0.5, sum by (le) (rate(switchyard_batch_frames_bucket[30s])))`, positive},
		{"handler p99", `histogram_quantile(0.99, sum by (le) (rate(switchyard_shard_handler_seconds_bucket{call="message"}[30s])))`, positive},
	} {
		check(t, pc, c.name, c.expr, c.ok)
	}

	if plotDir != "" {
		hold(t, p)
	}
	checkPanels(t, pc, panels)
	checkRules(t, pc, rules)

	if plotDir != "" {
		// Points every 2 s: a few hundred a line over the run.
		end := time.Now()
		pctx, pcancel := context.WithTimeout(context.Background(), poll.Patience)
		defer pcancel()
		files, err := promq.PlotDashboard(pctx, pc, panels, promq.Vars(rateInterval), started, end, 2*time.Second, plotDir)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("dashboard %s – %s UTC drawn into %v", started.UTC().Format("2006-01-02 15:04:05"), end.UTC().Format("15:04:05"), files)
	}
}

// silentOnHealthy is the allow-list of expressions that are legitimately
// empty on a healthy cluster: every alert condition, each with why it is
// empty here. For these the test checks that the expression runs, that
// every series it reads exists, and that it is empty (an alert firing
// here would page on every healthy cluster). An alert added to
// alerts.yml without an entry fails the test. No panel query is on the
// list: every series a panel reads is written from process start (at 0),
// so each panel has data on a healthy cluster.
var silentOnHealthy = map[string]string{
	"SwitchyardGatewayDown":         "every gateway target answers: up == 1",
	"SwitchyardShardDown":           "every shard target answers: up == 1",
	"SwitchyardShardNotReady":       "both shards joined and are not draining",
	"SwitchyardShardUnreachable":    "every gateway holds its links to both shards",
	"SwitchyardRingDisagreement":    "converged: one fingerprint",
	"SwitchyardCircuitOpen":         "no shard is slow or down",
	"SwitchyardHandshakeErrors":     "no handshake is refused",
	"SwitchyardFramesDropped":       "no frame is dropped but for resent duplicates, which it leaves out",
	"SwitchyardShardDrops":          "no message is dropped",
	"SwitchyardMemoryPerSession":    "a few sessions: under the 10,000 it judges from",
	"SwitchyardGatewayFdsNearLimit": "a few connections against the limit",
	"SwitchyardShardFdsNearLimit":   "a few links against the limit",
}

// checkPanels runs every target of every panel (variables substituted):
// a query error fails at once; an empty result fails once poll.Patience
// has passed.
func checkPanels(t *testing.T, pc *promq.Client, panels []promq.Panel) {
	t.Helper()
	type query struct{ name, expr string }
	var pending []query
	for _, p := range panels {
		for _, tg := range p.Targets {
			expr, err := promq.Expand(tg.Expr, promq.Vars(rateInterval))
			if err != nil {
				t.Fatalf("panel %q: %v", p.Title, err)
			}
			pending = append(pending, query{fmt.Sprintf("panel %q/%q", p.Row, p.Title), expr})
		}
	}
	if len(pending) == 0 {
		t.Fatal("the dashboard has no query to check")
	}
	t.Logf("%d panel queries", len(pending))
	poll.Until(t, poll.Patience, func() error {
		var still []query
		for _, q := range pending {
			s, err := pc.Query(context.Background(), q.expr)
			if err != nil {
				t.Fatalf("%s: %v", q.name, err)
			}
			if len(s) == 0 {
				still = append(still, q)
			}
		}
		pending = still
		if len(pending) > 0 {
			var b strings.Builder
			for _, q := range pending {
				fmt.Fprintf(&b, "\n  %s: %s", q.name, q.expr)
			}
			return fmt.Errorf("%d panel queries without data:%s", len(pending), b.String())
		}
		return nil
	})
}

// checkRules runs every alert expression: each is on silentOnHealthy,
// runs without error and is empty on this healthy cluster, and every
// series it reads exists (an empty answer from a misspelt name would pass
// otherwise). Then Prometheus itself must have evaluated every rule of the
// file without error.
func checkRules(t *testing.T, pc *promq.Client, rules []promq.Rule) {
	t.Helper()
	if len(rules) == 0 {
		t.Fatal("alerts.yml has no rule")
	}
	t.Logf("%d alert expressions", len(rules))
	for _, r := range rules {
		if _, ok := silentOnHealthy[r.Name]; !ok {
			t.Errorf("alert %s is not on silentOnHealthy: say why it is empty on a healthy cluster, or check it otherwise", r.Name)
		}
		s, err := pc.Query(context.Background(), r.Expr)
		if err != nil {
			t.Fatalf("alert %s: %v", r.Name, err)
		}
		if len(s) > 0 {
			t.Errorf("alert %s fires on a healthy cluster: %s = %v", r.Name, r.Expr, s)
		}
		seriesExist(t, pc, "alert "+r.Name, r.Expr)
	}
	poll.Until(t, poll.Patience, func() error {
		health, err := ruleHealth(pc)
		if err != nil {
			return err
		}
		for _, r := range rules {
			h, ok := health[r.Name]
			if !ok {
				return fmt.Errorf("rule %s not loaded by Prometheus (loaded: %v)", r.Name, health)
			}
			if h != "ok" {
				return fmt.Errorf("rule %s: health %q", r.Name, h)
			}
		}
		return nil
	})
}

// seriesExist fails unless every series name expr reads has at least one
// series in Prometheus.
func seriesExist(t *testing.T, pc *promq.Client, name, expr string) {
	t.Helper()
	names := promq.MetricNames(expr)
	if len(names) == 0 {
		t.Fatalf("%s: reads no series: %s", name, expr)
	}
	for _, m := range names {
		check(t, pc, name+": series "+m, "count("+m+")", atLeast(1))
	}
}

// ruleHealth returns each rule's health as Prometheus evaluated it ("ok",
// "err", "unknown" before its first evaluation), by rule name.
func ruleHealth(pc *promq.Client) (map[string]string, error) {
	resp, err := http.Get(pc.URL + "/api/v1/rules")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := jsonDecode(resp, &r); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, g := range r.Data.Groups {
		for _, rule := range g.Rules {
			out[rule.Name] = rule.Health + strings.TrimSpace(" "+rule.LastError)
		}
	}
	return out, nil
}

// check polls expr until ok accepts its answer; a query error fails at once.
func check(t *testing.T, pc *promq.Client, name, expr string, ok func([]promq.Sample) error) {
	t.Helper()
	poll.Until(t, poll.Patience, func() error {
		s, err := pc.Query(context.Background(), expr)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := ok(s); err != nil {
			return fmt.Errorf("%s: %s: %w", name, expr, err)
		}
		return nil
	})
}

// all wants n samples, each accepted by ok.
func all(s []promq.Sample, n int, ok func(float64) bool) error {
	if len(s) != n {
		return fmt.Errorf("%d series, want %d: %v", len(s), n, s)
	}
	for _, x := range s {
		if !ok(x.Value) {
			return fmt.Errorf("%v", s)
		}
	}
	return nil
}

func one(s []promq.Sample) (float64, error) {
	if len(s) != 1 {
		return 0, fmt.Errorf("%d series, want 1: %v", len(s), s)
	}
	return s[0].Value, nil
}

func atLeast(min float64) func([]promq.Sample) error {
	return func(s []promq.Sample) error {
		v, err := one(s)
		if err == nil && !(v >= min) {
			err = fmt.Errorf("%v, want at least %v", v, min)
		}
		return err
	}
}

func exactly(want float64) func([]promq.Sample) error {
	return func(s []promq.Sample) error {
		v, err := one(s)
		if err == nil && v != want {
			err = fmt.Errorf("%v, want %v", v, want)
		}
		return err
	}
}

// positive wants a finite number above 0 (histogram_quantile answers NaN
// without observations in the window).
func positive(s []promq.Sample) error {
	v, err := one(s)
	if err == nil && (math.IsNaN(v) || math.IsInf(v, 0) || v <= 0) {
		err = fmt.Errorf("%v, want a positive number", v)
	}
	return err
}

// binaries finds Debian's prometheus and promtool. Without them the test
// skips, unless SWITCHYARD_REQUIRE_PROMETHEUS is set (make test sets it).
func binaries(t *testing.T) (prom, promtool string) {
	t.Helper()
	var missing []string
	for _, name := range []string{"prometheus", "promtool"} {
		path, err := exec.LookPath(name)
		if err != nil {
			missing = append(missing, name)
		}
		if name == "prometheus" {
			prom = path
		} else {
			promtool = path
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("%v not found: install Debian's prometheus (apt-get install prometheus), or run make test as root", missing)
		if os.Getenv("SWITCHYARD_REQUIRE_PROMETHEUS") != "" {
			t.Fatalf("%s (SWITCHYARD_REQUIRE_PROMETHEUS is set)", msg)
		}
		t.Skip(msg)
	}
	return prom, promtool
}

// scrapeConfig is a Prometheus configuration scraping p's gateways and
// shards every second under the job names of prometheus.yml, with
// alerts.yml's rules evaluated every second.
func scrapeConfig(t *testing.T, p *testcluster.Procs) string {
	t.Helper()
	rules, err := filepath.Abs("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var gws, shards []string
	for i := 0; i < 2; i++ {
		gws = append(gws, strconv.Quote(p.Gateway(i).Admin))
		shards = append(shards, strconv.Quote(p.Shard(i).Admin))
	}
	return fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: switchyard-gateway
    static_configs: [{targets: [%s]}]
  - job_name: switchyard-shard
    static_configs: [{targets: [%s]}]
`, rules, strings.Join(gws, ", "), strings.Join(shards, ", "))
}

// startPrometheus runs the prometheus binary with config on a free
// loopback port and a temporary storage directory (again on another port
// when the one picked was taken meanwhile), waits for /-/ready, and kills
// it by its PID in t.Cleanup.
func startPrometheus(t *testing.T, bin, config string) *promq.Client {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		addr, err := freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		logPath := filepath.Join(dir, fmt.Sprintf("prometheus-%d.log", attempt))
		logf, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, fmt.Sprintf("data-%d", attempt)),
			"--web.listen-address="+addr, "--log.level=warn")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			t.Fatalf("start %s: %v", bin, err)
		}
		done := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			logf.Close()
			close(done)
		}()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-done
		})
		url := "http://" + addr
		exited := false
		poll.Until(t, poll.Patience, func() error {
			select {
			case <-done:
				exited = true
				return nil
			default:
			}
			resp, err := http.Get(url + "/-/ready")
			if err != nil {
				return fmt.Errorf("prometheus not ready: %w", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("prometheus /-/ready: %d", resp.StatusCode)
			}
			return nil
		})
		if !exited {
			return &promq.Client{URL: url}
		}
		log, _ := os.ReadFile(logPath)
		if attempt == 2 || !strings.Contains(string(log), "address already in use") {
			t.Fatalf("prometheus exited:\n%s", log)
		}
	}
}

// freeAddr is a loopback address whose port was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startLoad connects n devices, alternately through each gateway, each
// sending reliable DATA every 100 ms and waiting for the counter's reply,
// and one more device that connects, exchanges a frame and leaves every
// 500 ms, so that handshakes keep happening. t.Cleanup stops them all.
func startLoad(t *testing.T, p *testcluster.Procs, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	gw := func(i int) string { return p.Gateway(i % 2).Addr }
	for i := range n {
		dctx, dcancel := context.WithTimeout(ctx, poll.Patience)
		c := testcluster.Dial(dctx, t, client.Config{Addr: gw(i), ID: fmt.Sprintf("prom-dev-%d", i)})
		dcancel()
		wg.Add(1)
		go func() {
			defer wg.Done()
			every(ctx, 100*time.Millisecond, func() {
				ectx, ecancel := context.WithTimeout(ctx, 5*time.Second)
				_, _ = testcluster.Exchange(ectx, c, "x") // a lost reply shows in the metrics, not here
				ecancel()
			})
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		i := 0
		every(ctx, 500*time.Millisecond, func() {
			i++
			dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
			defer dcancel()
			c, err := testcluster.DialRetry(dctx, client.Config{Addr: gw(i), ID: "prom-churn"})
			if err != nil {
				return
			}
			_, _ = testcluster.Exchange(dctx, c, "x")
			c.Close()
		})
	}()
	// Registered after the devices' own cleanups, so it runs before them:
	// the goroutines stop before their clients close.
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// every calls f every d until ctx ends (pacing the load; not a wait).
func every(ctx context.Context, d time.Duration, f func()) {
	tk := time.NewTicker(d)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			f()
		}
	}
}

// hold keeps the load on for the pictures (SWITCHYARD_DASHBOARD_LOAD,
// default 3m): a third shard joins after a third of it (sessions move to
// it) and is drained after two thirds (they move back).
func hold(t *testing.T, p *testcluster.Procs) {
	t.Helper()
	d := 3 * time.Minute
	if s := os.Getenv("SWITCHYARD_DASHBOARD_LOAD"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			t.Fatalf("SWITCHYARD_DASHBOARD_LOAD: %v", err)
		}
	}
	wait := func(x time.Duration) { // the load runs meanwhile: this is the picture's time axis
		<-time.After(x)
	}
	wait(d / 3)
	p.StartShard("s2")
	ctx, cancel := context.WithTimeout(context.Background(), 2*poll.Patience)
	defer cancel()
	if err := p.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	wait(d / 3)
	p.Stop(2)
	if err := p.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	wait(d / 3)
}

func jsonDecode(resp *http.Response, v any) error {
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
