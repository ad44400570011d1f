// Command promplot draws the panels of a Grafana dashboard
// (deploy/grafana/switchyard.json by default) from a Prometheus's range
// queries into SVG files, one per dashboard row, for where no Grafana is
// at hand: the pictures of docs/operations.md "Dashboard" come from it
// (through deploy/prometheus's test, which calls the same code,
// promq.PlotDashboard, against the Prometheus it ran).
//
//	promplot --prom http://127.0.0.1:9090 --last 15m --out /tmp/dash
//	promplot --prom URL --from 2026-12-04T01:20:00Z --to 2026-12-04T01:25:00Z
//
// Template variables: $gateway and $shard stand for every instance (.*),
// $__rate_interval for --rate-interval; --var name=value sets others.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/switchyard-gw/switchyard/internal/promq"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "promplot:", err)
		os.Exit(1)
	}
}

type vars map[string]string

func (v vars) String() string { return fmt.Sprint(map[string]string(v)) }
func (v vars) Set(s string) error {
	name, val, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("--var %q: want name=value", s)
	}
	v[name] = val
	return nil
}

func run(args []string) error {
	fs := flag.NewFlagSet("promplot", flag.ContinueOnError)
	prom := fs.String("prom", "http://127.0.0.1:9090", "Prometheus base URL")
	dash := fs.String("dashboard", "deploy/grafana/switchyard.json", "Grafana dashboard JSON")
	out := fs.String("out", ".", "directory for the SVG files")
	last := fs.Duration("last", 15*time.Minute, "plot the last this long (unless --from)")
	from := fs.String("from", "", "start, RFC 3339")
	to := fs.String("to", "", "end, RFC 3339 (default now)")
	step := fs.Duration("step", 0, "query resolution (default: the range / 300, at least 1s)")
	rate := fs.String("rate-interval", "1m", "what $__rate_interval stands for")
	v := vars(promq.Vars(""))
	fs.Var(v, "var", "template variable name=value (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	if v["__rate_interval"] == "" {
		v["__rate_interval"] = *rate
	}
	end := time.Now()
	if *to != "" {
		t, err := time.Parse(time.RFC3339, *to)
		if err != nil {
			return fmt.Errorf("--to: %w", err)
		}
		end = t
	}
	start := end.Add(-*last)
	if *from != "" {
		t, err := time.Parse(time.RFC3339, *from)
		if err != nil {
			return fmt.Errorf("--from: %w", err)
		}
		start = t
	}
	if !start.Before(end) {
		return fmt.Errorf("start %v is not before end %v", start, end)
	}
	if *step <= 0 {
		*step = max(time.Second, end.Sub(start)/300)
	}
	panels, err := promq.LoadDashboard(*dash)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	files, err := promq.PlotDashboard(ctx, &promq.Client{URL: *prom}, panels, v, start, end, *step, *out)
	for _, f := range files {
		fmt.Println(f)
	}
	return err
}
