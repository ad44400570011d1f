package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseMetrics(t *testing.T) {
	m := parseMetrics(strings.NewReader(`# HELP x
switchyard_sessions 14286
switchyard_disconnects_total{reason="handshake_timeout"} 1495
switchyard_disconnects_total{reason="peer"} 3

`))
	if m["switchyard_sessions"] != 14286 || m[`switchyard_disconnects_total{reason="handshake_timeout"}`] != 1495 || len(m) != 3 {
		t.Fatalf("%v", m)
	}
}

// TestConnectRate: the rate between the 10 % and 90 % crossings,
// interpolated between samples, and 0 when the sessions never got there.
func TestConnectRate(t *testing.T) {
	ss := []sample{{T: 1, Sessions: 0}, {T: 2, Sessions: 500}, {T: 3, Sessions: 1000}}
	// 100 at t=1.2, 900 at t=2.8: 800 sessions in 1.6 s.
	if got := connectRate(ss, 1000); got < 499.9 || got > 500.1 {
		t.Errorf("connectRate = %v, want 500", got)
	}
	if got := connectRate(ss[:2], 1000); got != 0 {
		t.Errorf("never at 90 %%: %v, want 0", got)
	}
}

// TestVerdict: a run passes only with every session up, no disconnect on
// either side and no error.
func TestVerdict(t *testing.T) {
	c := &config{Sessions: 100}
	good := func() *summary {
		return &summary{UpAfter: 3, Loadgen: &loadgenReport{Handshakes: 100}}
	}
	if err := good().verdict(c); err != nil {
		t.Fatalf("good run: %v", err)
	}
	for name, spoil := range map[string]func(*summary){
		"never up":            func(s *summary) { s.UpAfter = 0 },
		"gateway disconnects": func(s *summary) { s.UnexpectedDisconnects = 1 },
		"no loadgen report":   func(s *summary) { s.Loadgen = nil },
		"few handshakes":      func(s *summary) { s.Loadgen.Handshakes = 99 },
		"loadgen disconnect":  func(s *summary) { s.Loadgen.Disconnects = 1 },
		"loadgen reconnect":   func(s *summary) { s.Loadgen.Reconnects = 1 },
		"loadgen error":       func(s *summary) { s.Loadgen.Errors = map[string]int64{"408": 1} },
		"stopped early":       func(s *summary) { s.StoppedBy = "memory" },
	} {
		s := good()
		spoil(s)
		if err := s.verdict(c); err == nil || s.Pass {
			t.Errorf("%s: passed", name)
		}
	}
}

// TestFinish derives per-session figures from the samples: the last one
// with every session up is the held state.
func TestFinish(t *testing.T) {
	s := &summary{Before: sample{GatewayRSS: 100e6, Slab: 1e9, Disconnects: 0}}
	s.Samples = []sample{
		{T: 1, Sessions: 500, GatewayRSS: 200e6},
		{T: 2, Sessions: 1000, GatewayRSS: 300e6, Slab: 1.008e9, GatewayCPU: 100},
		{T: 12, Sessions: 1000, GatewayRSS: 303e6, Slab: 1.008e9, GatewayCPU: 600, Disconnects: 2},
		{T: 13.5, Sessions: 1000, GatewayRSS: 303e6, Disconnects: 500}, // loadgen stopping
		{T: 16, Sessions: 10, GatewayRSS: 101e6, Disconnects: 992},
	}
	c := &config{Sessions: 1000, Ramp: 1000, Hold: 14 * time.Second} // load ends at t=15
	s.finish(c, &cluster{dir: t.TempDir()})
	if s.Held.T != 12 || s.GatewayBytesPerSession != 203e3 || s.KernelBytesPerSocket != 4000 || s.UnexpectedDisconnects != 2 {
		t.Errorf("held t=%v gateway %v B kernel %v B disconnects %v", s.Held.T, s.GatewayBytesPerSession, s.KernelBytesPerSocket, s.UnexpectedDisconnects)
	}
	if s.HoldDisconnects != 2 {
		t.Errorf("disconnects once all were up: %v, want 2", s.HoldDisconnects)
	}
	if s.GatewayBytesPerSessionUp != 200e3 || s.First.T != 2 {
		t.Errorf("first t=%v gateway %v B", s.First.T, s.GatewayBytesPerSessionUp)
	}
	if s.GatewayCoresHeld <= 0 {
		t.Errorf("gateway cores %v", s.GatewayCoresHeld)
	}
}

// TestFinishPartial: when the sessions never all came up, the figures are
// per session at the most that were.
func TestFinishPartial(t *testing.T) {
	s := &summary{Before: sample{GatewayRSS: 100e6}}
	s.Samples = []sample{{T: 1, Sessions: 400, GatewayRSS: 180e6}, {T: 2, Sessions: 500, GatewayRSS: 200e6}, {T: 3, Sessions: 450, GatewayRSS: 190e6}}
	s.finish(&config{Sessions: 1000, Ramp: 100, Hold: time.Minute}, &cluster{dir: t.TempDir()})
	if s.Held.T != 2 || s.GatewayBytesPerSession != 200e3 {
		t.Errorf("held t=%v gateway %v B per session", s.Held.T, s.GatewayBytesPerSession)
	}
}
