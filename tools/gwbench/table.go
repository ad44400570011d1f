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
	noRatio  bool   // a count or the box's noise: a ratio would mean nothing
}

// figures lists the rows of the comparison table, in order.
var figures = []figure{
	{scenario: "mem", key: "bytes_per_session", label: "mem: RSS per idle session, after --settle (B)", format: "%.0f"},
	{scenario: "mem", key: "bytes_per_session_late", label: "mem: same, --late later (B)", format: "%.0f"},
	{scenario: "mem", key: "anon_bytes_per_session", label: "mem: RssAnon per idle session (B)", format: "%.0f"},
	{scenario: "mem", key: "children_rss_bytes_per_session", label: "mem: target's child processes (haproxy: the baseline behind it; remote: the shard) RSS per session (B)", format: "%.0f"},
	{scenario: "mem", key: "total_bytes_per_session", label: "mem: target and children RSS per session (B)", format: "%.0f"},
	{scenario: "mem", key: "rss_before_bytes", label: "mem: RSS before (MiB)", format: "mib"},
	{scenario: "mem", key: "sessions", label: "mem: sessions held", format: "%.0f", noRatio: true},
	{scenario: "cpu", key: "frames_per_sec", label: "cpu: echoed frames/s", format: "%.0f"},
	{scenario: "cpu", key: "server_us_per_frame", label: "cpu: server CPU per frame (µs)", format: "%.2f"},
	{scenario: "cpu", key: "server_cores", label: "cpu: server cores busy", format: "%.2f"},
	{scenario: "cpu", key: "client_us_per_frame", label: "cpu: driver CPU per frame (µs)", format: "%.2f"},
	{scenario: "cpu", key: "children_us_per_frame", label: "cpu: target's child processes (remote: the shard; haproxy: the baseline behind it) CPU per frame (µs)", format: "%.2f"},
	{scenario: "cpu", key: "children_cores", label: "cpu: child processes' cores busy", format: "%.2f"},
	{scenario: "cpu", key: "target_rate", label: "cpu open loop: scheduled frames/s", format: "%.0f", noRatio: true},
	{scenario: "cpu", key: "achieved_rate", label: "cpu open loop: frames/s sent", format: "%.0f"},
	{scenario: "cpu", key: "latency_p50_us", label: "cpu: latency p50 (µs)", format: "%.0f"},
	{scenario: "cpu", key: "latency_p90_us", label: "cpu: latency p90 (µs)", format: "%.0f"},
	{scenario: "cpu", key: "latency_p99_us", label: "cpu: latency p99 (µs)", format: "%.0f"},
	{scenario: "cpu", key: "latency_p999_us", label: "cpu: latency p99.9 (µs)", format: "%.0f"},
	{scenario: "cpu", key: "latency_max_us", label: "cpu: latency max (µs)", format: "%.0f"},
	{scenario: "cpu", key: "send_lag_p99_us", label: "cpu open loop: send lag p99 (µs)", format: "%.0f"},
	{scenario: "cpu", key: "late_sends", label: "cpu open loop: late sends", format: "%.0f", noRatio: true},
	{scenario: "cpu", key: "missed_sends", label: "cpu open loop: missed sends", format: "%.0f", noRatio: true},
	{scenario: "cpu", key: "unanswered", label: "cpu open loop: unanswered frames", format: "%.0f", noRatio: true},
	{scenario: "cpu", key: "other_cores", label: "cpu: other load on the box (cores)", format: "%.2f", noRatio: true},
	{scenario: "handshake", key: "sessions_per_sec", label: "handshake: sessions/s", format: "%.0f"},
	{scenario: "handshake", key: "server_us_per_session", label: "handshake: server CPU per session (µs)", format: "%.1f"},
	{scenario: "handshake", key: "children_us_per_session", label: "handshake: target's child processes (remote: the shard; haproxy: the baseline behind it) CPU per session (µs)", format: "%.1f"},
	{scenario: "handshake", key: "latency_p99_us", label: "handshake: latency p99 (µs)", format: "%.0f"},
	{scenario: "handshake", key: "failures", label: "handshake: failures", format: "%.0f", noRatio: true},
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
			if t != baseline && base != 0 && !f.noRatio {
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
