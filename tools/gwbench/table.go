package main

import (
	"fmt"
	"strings"
)

// figure is one row of the comparison table.
type figure struct {
	scenario string
	key      string // key in Result.Results
	label    string
	format   string // fmt verb for the value
}

// figures lists the rows of the comparison table, in order.
var figures = []figure{
	{"mem", "bytes_per_session", "mem: RSS per idle session, after --settle (B)", "%.0f"},
	{"mem", "bytes_per_session_late", "mem: same, --late later (B)", "%.0f"},
	{"mem", "anon_bytes_per_session", "mem: RssAnon per idle session (B)", "%.0f"},
	{"mem", "rss_before_bytes", "mem: RSS before (MiB)", "mib"},
	{"mem", "sessions", "mem: sessions held", "%.0f"},
	{"cpu", "frames_per_sec", "cpu: echoed frames/s", "%.0f"},
	{"cpu", "server_us_per_frame", "cpu: server CPU per frame (µs)", "%.2f"},
	{"cpu", "server_cores", "cpu: server cores busy", "%.2f"},
	{"cpu", "client_us_per_frame", "cpu: driver CPU per frame (µs)", "%.2f"},
	{"cpu", "children_us_per_frame", "cpu: target's child processes (backend shards) CPU per frame (µs)", "%.2f"},
	{"cpu", "children_cores", "cpu: child processes' cores busy", "%.2f"},
	{"cpu", "target_rate", "cpu open loop: scheduled frames/s", "%.0f"},
	{"cpu", "achieved_rate", "cpu open loop: frames/s sent", "%.0f"},
	{"cpu", "latency_p50_us", "cpu: latency p50 (µs)", "%.0f"},
	{"cpu", "latency_p90_us", "cpu: latency p90 (µs)", "%.0f"},
	{"cpu", "latency_p99_us", "cpu: latency p99 (µs)", "%.0f"},
	{"cpu", "latency_p999_us", "cpu: latency p99.9 (µs)", "%.0f"},
	{"cpu", "latency_max_us", "cpu: latency max (µs)", "%.0f"},
	{"cpu", "send_lag_p99_us", "cpu open loop: send lag p99 (µs)", "%.0f"},
	{"cpu", "late_sends", "cpu open loop: late sends", "%.0f"},
	{"cpu", "missed_sends", "cpu open loop: missed sends", "%.0f"},
	{"cpu", "unanswered", "cpu open loop: unanswered frames", "%.0f"},
	{"cpu", "other_cores", "cpu: other load on the box (cores)", "%.2f"},
	{"handshake", "sessions_per_sec", "handshake: sessions/s", "%.0f"},
	{"handshake", "server_us_per_session", "handshake: server CPU per session (µs)", "%.1f"},
	{"handshake", "latency_p99_us", "handshake: latency p99 (µs)", "%.0f"},
	{"handshake", "failures", "handshake: failures", "%.0f"},
}

// collect returns the values of key over the runs of scenario on target.
func collect(rs []*Result, scenario, target, key string) []float64 {
	var out []float64
	for _, r := range rs {
		if r.Scenario != scenario || r.Target != target {
			continue
		}
		if v, ok := r.Results[key]; ok {
			out = append(out, v)
		}
	}
	return out
}

func formatValue(format string, v float64) string {
	if format == "mib" {
		return fmt.Sprintf("%.1f", v/(1<<20))
	}
	return fmt.Sprintf(format, v)
}

// markdownTable renders the median of every figure for every target, with
// the ratio to the baseline target and the number of runs.
func markdownTable(rs []*Result, targets []string, baseline string) string {
	var b strings.Builder
	b.WriteString("| figure |")
	for _, t := range targets {
		fmt.Fprintf(&b, " %s |", t)
	}
	b.WriteString("\n|---|")
	for range targets {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, f := range figures {
		base := median(collect(rs, f.scenario, baseline, f.key))
		row, any := "| "+f.label+" |", false
		for _, t := range targets {
			vs := collect(rs, f.scenario, t, f.key)
			if len(vs) == 0 {
				row += " – |"
				continue
			}
			any = true
			m := median(vs)
			cell := formatValue(f.format, m)
			if t != baseline && base != 0 {
				cell += fmt.Sprintf(" (×%.2f)", m/base)
			}
			row += fmt.Sprintf(" %s [n=%d] |", cell, len(vs))
		}
		if any {
			b.WriteString(row + "\n")
		}
	}
	return b.String()
}
