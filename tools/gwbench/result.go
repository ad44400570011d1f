package main

import (
	"github.com/switchyard-gw/switchyard/internal/procstat"

	"encoding/json"
	"fmt"
	"os"
	"sort"
	"time"
)

// Result is one scenario run against one target: the JSON object printed on
// stdout and appended (one per line) to the --out file.
type Result struct {
	Scenario string             `json:"scenario"`
	Target   string             `json:"target"`
	Addr     string             `json:"addr"`
	PID      int                `json:"pid"`
	Params   map[string]any     `json:"params"`
	Results  map[string]float64 `json:"results"`
	Notes    []string           `json:"notes,omitempty"`
	Date     string             `json:"date"`
	Host     procstat.Host      `json:"host"`
}

func newResult(scenario string, t target) *Result {
	return &Result{
		Scenario: scenario, Target: t.name, Addr: t.addr, PID: t.pid,
		Params: map[string]any{}, Results: map[string]float64{},
		Date: time.Now().UTC().Format(time.RFC3339), Host: procstat.ThisHost(),
	}
}

// emit prints r as one JSON line and appends it to path (if not empty).
func (r *Result) emit(path string) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("gwbench: open %s: %w", path, err)
	}
	defer f.Close()
	_, err = f.Write(append(b, '\n'))
	return err
}

// median of xs (the mean of the middle two for an even count); 0 if empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// perUnitMicros converts a CPU tick delta into microseconds per unit of work.
func perUnitMicros(ticks, hz, units int64) float64 {
	if units <= 0 || hz <= 0 {
		return 0
	}
	return float64(ticks) * 1e6 / float64(hz) / float64(units)
}

// perSession is the RSS growth per session in bytes.
func perSession(before, after int64, n int) float64 {
	if n <= 0 {
		return 0
	}
	return float64(after-before) / float64(n)
}
