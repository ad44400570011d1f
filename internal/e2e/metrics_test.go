package e2e

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/examples/echo"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/server"
)

// documentedSeries reads the names of the series docs/operations.md
// "Metrics" lists: every backquoted name in the first cell of its tables'
// rows, labels dropped, with the switchyard_ prefix the page leaves out.
func documentedSeries(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## Metrics\n")
	if !ok {
		t.Fatal(`docs/operations.md has no "## Metrics" section`)
	}
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	names := map[string]bool{}
	quoted := regexp.MustCompile("`([a-z_]+)(\\{[^`]*\\})?`")
	for line := range strings.Lines(sec) {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cell := strings.Split(line, "|")[1]
		for _, m := range quoted.FindAllStringSubmatch(cell, -1) {
			names["switchyard_"+m[1]] = true
		}
	}
	if len(names) < 20 {
		t.Fatalf("only %d series found in docs/operations.md: the table's format changed?", len(names))
	}
	return names
}

// scrapedSeries returns the metric names a /metrics page exposes
// (histograms by their base name), the Go runtime's and the process's
// left out.
func scrapedSeries(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: %d %s", url, resp.StatusCode, b)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || strings.HasPrefix(line, "go_") || strings.HasPrefix(line, "process_") {
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		names[name] = true
	}
	out := map[string]bool{}
	for name := range names {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && names[base+"_bucket"] {
				name = base
			}
		}
		out[name] = true
	}
	return out
}

// TestMetricsDocumented: every series a gateway in a cluster and a shard
// expose, after a little traffic, is listed in docs/operations.md
// "Metrics" (series added to the code without a row there fail here).
func TestMetricsDocumented(t *testing.T) {
	g := gateway(t, server.Config{AdminListen: "127.0.0.1:0", Cluster: gossipCfg(), LinkKeys: [][]byte{linkKey}})
	s := startShard(t, backend.Config{Shard: "m1", Link: "127.0.0.1:0", ClusterKeys: [][]byte{linkKey},
		Handler: echo.Handler{}, Gossip: gossipCfg(g.GossipAddr()), AdminListen: "127.0.0.1:0"})
	waitFor(t, "ring has the shard", func() bool { return g.Shards() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), poll.Patience)
	defer cancel()
	c := dial(t, client.Config{Addr: g.Addr().String(), ID: "metrics-dev"})
	if err := c.Send(ctx, []byte("hi"), true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Recv(ctx); err != nil {
		t.Fatal(err)
	}

	doc := documentedSeries(t)
	for _, url := range []string{"http://" + g.AdminAddr() + "/metrics", "http://" + s.AdminAddr() + "/metrics"} {
		got := scrapedSeries(t, url)
		var missing []string
		for name := range got {
			if !doc[name] {
				missing = append(missing, name)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("%s exposes series docs/operations.md \"Metrics\" does not list:\n  %s", url, strings.Join(missing, "\n  "))
		}
		for _, must := range []string{"switchyard_build_info"} {
			if !got[must] {
				t.Errorf("%s: no %s", url, must)
			}
		}
	}
}
