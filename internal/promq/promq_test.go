package promq

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExpand(t *testing.T) {
	got, err := Expand(`rate(x{instance=~"$gateway",job="j"}[$__rate_interval]) / y{i=~"${shard}"}`, Vars("30s"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `rate(x{instance=~".*",job="j"}[30s]) / y{i=~".*"}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if _, err := Expand(`x{i=~"$gatway"}`, Vars("30s")); err == nil || !strings.Contains(err.Error(), "gatway") {
		t.Fatalf("a misspelt variable: %v, want an error naming it", err)
	}
}

func TestMetricNames(t *testing.T) {
	got := MetricNames(`(process_resident_memory_bytes{job="switchyard-gateway"} - 1) / switchyard_sessions > 3
		and on (instance, job) switchyard_sessions > 10 or up{job=~"switchyard_x|process_y"} == 0`)
	want := []string{"process_resident_memory_bytes", "switchyard_sessions", "up"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// TestLoadRealFiles: the shipped dashboard and rule file parse, every
// panel has a query and every query expands with the default variables.
func TestLoadRealFiles(t *testing.T) {
	panels, err := LoadDashboard("../../deploy/grafana/switchyard.json")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, p := range panels {
		rows[p.Row] = true
		for _, tg := range p.Targets {
			if _, err := Expand(tg.Expr, Vars("1m")); err != nil {
				t.Error(err)
			}
		}
	}
	for _, r := range []string{"Cluster overview", "Per gateway", "Per shard", "Links", "Migrations"} {
		if !rows[r] {
			t.Errorf("dashboard has no row %q", r)
		}
	}
	rules, err := LoadRules("../../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) < 8 {
		t.Fatalf("%d rules: %v", len(rules), rules)
	}
	for _, r := range rules {
		if r.Name == "" || r.Expr == "" {
			t.Errorf("rule without a name or an expression: %+v", r)
		}
	}
}

func TestLoadDashboardRefusesPanelWithoutQuery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.json")
	if err := os.WriteFile(path, []byte(`{"panels":[{"type":"row","title":"r"},{"type":"timeseries","title":"empty","targets":[{"expr":""}]}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDashboard(path); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("got %v, want an error naming the panel", err)
	}
}

// fakeProm answers the two query endpoints as Prometheus does: a vector,
// a matrix, or an error for a query that does not parse.
func fakeProm(t *testing.T) *Client {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query().Get("query")
		switch {
		case q == "bad(":
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"status":"error","errorType":"bad_data","error":"parse error: unclosed left parenthesis"}`)
		case r.URL.Path == "/api/v1/query":
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"instance":"a"},"value":[1700000000.5,"2.5"]},{"metric":{"instance":"b"},"value":[1700000000.5,"NaN"]}]}}`)
		case r.URL.Path == "/api/v1/query_range":
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"instance":"a","type":"DATA"},"values":[[1700000000,"1"],[1700000001,"3"],[1700000002,"NaN"],[1700000003,"2"]]}]}}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return &Client{URL: srv.URL}
}

func TestQuery(t *testing.T) {
	c := fakeProm(t)
	s, err := c.Query(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 2 || s[0].Value != 2.5 || s[0].Metric["instance"] != "a" || !math.IsNaN(s[1].Value) {
		t.Fatalf("got %+v", s)
	}
	if _, err := c.Query(context.Background(), "bad("); err == nil || !strings.Contains(err.Error(), "unclosed left parenthesis") {
		t.Fatalf("a query that does not parse: %v, want Prometheus's error", err)
	}
}

// TestPlotDashboard: each row becomes one SVG with its panels' titles, a
// line per series named by its legend, and a gap at NaN.
func TestPlotDashboard(t *testing.T) {
	c := fakeProm(t)
	panels := []Panel{
		{Row: "Per gateway", Title: "Frames & bytes", Unit: "ops", Targets: []Target{{Expr: `rate(x{instance=~"$gateway"}[$__rate_interval])`, Legend: "{{instance}} {{type}}"}}},
		{Row: "Links", Title: "Queue", Unit: "bytes", Targets: []Target{{Expr: "y"}}},
	}
	dir := t.TempDir()
	start := time.Unix(1700000000, 0)
	files, err := PlotDashboard(context.Background(), c, panels, Vars("30s"), start, start.Add(3*time.Second), time.Second, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "dashboard-per-gateway.svg"), filepath.Join(dir, "dashboard-links.svg")}
	if !reflect.DeepEqual(files, want) {
		t.Fatalf("files %v, want %v", files, want)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	svg := string(b)
	for _, s := range []string{"<svg", "Per gateway", "Frames &amp; bytes", ">a DATA</text>", "</svg>"} {
		if !strings.Contains(svg, s) {
			t.Errorf("SVG lacks %q", s)
		}
	}
	// Two segments: M…L… before the NaN, M… after it.
	if n := strings.Count(svg, "<path d=\"M"); n != 1 {
		t.Errorf("%d paths, want 1", n)
	}
	if i := strings.Index(svg, "<path d=\""); i < 0 || strings.Count(svg[i:strings.Index(svg[i:], "/>")+i], "M") != 2 {
		t.Errorf("the NaN point does not break the line: %s", svg[i:])
	}
}
