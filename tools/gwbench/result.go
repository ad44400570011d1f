package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
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
	Host     hostInfo           `json:"host"`
}

// hostInfo says which machine produced a result.
type hostInfo struct {
	Hostname string `json:"hostname"`
	Kernel   string `json:"kernel"` // uname -r
	NProc    int    `json:"nproc"`
	MemTotal int64  `json:"mem_total_bytes"`
	Go       string `json:"go"`
}

func newResult(scenario string, t target) *Result {
	return &Result{
		Scenario: scenario, Target: t.name, Addr: t.addr, PID: t.pid,
		Params: map[string]any{}, Results: map[string]float64{},
		Date: time.Now().UTC().Format(time.RFC3339), Host: host(),
	}
}

func host() hostInfo {
	h := hostInfo{NProc: runtime.NumCPU(), Go: runtime.Version()}
	h.Hostname, _ = os.Hostname()
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		h.Kernel = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				fmt.Sscanf(strings.TrimSpace(rest), "%d", &h.MemTotal)
				h.MemTotal *= 1024
			}
		}
	}
	return h
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
