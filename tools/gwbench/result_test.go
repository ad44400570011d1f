package main

import (
	"github.com/switchyard-gw/switchyard/internal/procstat"

	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{5}, 5},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		in := append([]float64(nil), tt.in...)
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
		for i := range in {
			if in[i] != tt.in[i] {
				t.Fatalf("median reordered its input")
			}
		}
	}
}

func TestPerUnit(t *testing.T) {
	// 150 ticks at 100 Hz = 1.5 s over 1,000,000 frames = 1.5 µs per frame.
	if got := perUnitMicros(150, 100, 1_000_000); got != 1.5 {
		t.Errorf("perUnitMicros = %v, want 1.5", got)
	}
	if got := perUnitMicros(150, 100, 0); got != 0 {
		t.Errorf("perUnitMicros with no frames = %v, want 0", got)
	}
	if got := perSession(10<<20, 10<<20+15000*3500, 15000); got != 3500 {
		t.Errorf("perSession = %v, want 3500", got)
	}
	if got := perSession(1, 2, 0); got != 0 {
		t.Errorf("perSession with no sessions = %v", got)
	}
}

func TestSampleSubReport(t *testing.T) {
	t0 := time.Unix(100, 0)
	a := sample{at: t0, units: 1000, server: procstat.CPUTicks{User: 10, Sys: 5}, client: procstat.CPUTicks{User: 1, Sys: 1}}
	b := sample{at: t0.Add(2 * time.Second), units: 201000, server: procstat.CPUTicks{User: 40, Sys: 15}, client: procstat.CPUTicks{User: 21, Sys: 11}}
	d := b.sub(a)
	if d.units != 200000 || d.wall != 2*time.Second || d.server != (procstat.CPUTicks{User: 30, Sys: 10}) || d.client != (procstat.CPUTicks{User: 20, Sys: 10}) {
		t.Fatalf("sub = %+v", d)
	}
	r := &Result{Results: map[string]float64{}}
	d.report(r, 100, "frame")
	want := map[string]float64{"frames": 200000, "server_cpu_s": 0.4, "server_us_per_frame": 2,
		"client_us_per_frame": 1.5, "server_cores": 0.2, "client_cores": 0.15}
	for k, v := range want {
		if got := r.Results[k]; got < v*0.999999 || got > v*1.000001 {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
}

func TestMarkdownTable(t *testing.T) {
	rs := []*Result{
		{Scenario: "cpu", Target: "baseline", Results: map[string]float64{"server_us_per_frame": 2}},
		{Scenario: "cpu", Target: "baseline", Results: map[string]float64{"server_us_per_frame": 4}},
		{Scenario: "cpu", Target: "baseline", Results: map[string]float64{"server_us_per_frame": 3}},
		{Scenario: "cpu", Target: "gateway", Results: map[string]float64{"server_us_per_frame": 1.5}},
	}
	md := markdownTable(rs, []string{"baseline", "gateway"}, "baseline")
	for _, want := range []string{"| figure | baseline | gateway |", "3.00 [n=3]", "1.50 (×0.50) [n=1]"} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "handshake") {
		t.Errorf("table has rows for scenarios that did not run:\n%s", md)
	}
}
