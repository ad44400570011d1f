package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestStatsWire: a child's line carries its latency histogram only when
// it recorded something (an empty one is tens of thousands of zeros), and
// the parent gets back what was recorded either way.
func TestStatsWire(t *testing.T) {
	roundTrip := func(s *Stats) (*Stats, string) {
		b, err := json.Marshal(line{Kind: "progress", Stats: s.wire()})
		if err != nil {
			t.Fatal(err)
		}
		var l line
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatal(err)
		}
		l.Stats.unwire()
		return l.Stats, string(b)
	}
	idle := newStats()
	idle.add(cPings, 3)
	got, js := roundTrip(idle)
	if strings.Contains(js, `"lat"`) || len(js) > 200 {
		t.Fatalf("an empty histogram went on the wire: %d bytes: %.200s", len(js), js)
	}
	total := newStats()
	total.merge(got)
	if total.C[cPings] != 3 || total.Lat.TotalCount() != 0 {
		t.Fatalf("idle line merged: pings %d, latencies %d; want 3, 0", total.C[cPings], total.Lat.TotalCount())
	}
	busy := newStats()
	busy.Lat.RecordValue(5000)
	busy.Lat.RecordValue(7000)
	got, _ = roundTrip(busy)
	total.merge(got)
	if total.Lat.TotalCount() != 2 {
		t.Fatalf("latencies after the busy line: %d, want 2", total.Lat.TotalCount())
	}
}
