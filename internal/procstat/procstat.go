// Package procstat reads what the benchmark tools need from /proc: a
// process's CPU time and resident memory, its descendants (a target made of
// several processes, a load generator's children), and the whole machine's
// busy time. Linux only; it is used by tools, never by the gateway.
package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// defaultClockTicks is USER_HZ on Linux (getconf CLK_TCK), used when getconf
// is missing.
const defaultClockTicks = 100

// ClockTicks returns the kernel's clock ticks per second (getconf CLK_TCK).
func ClockTicks() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err != nil {
		return defaultClockTicks
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil || n <= 0 {
		return defaultClockTicks
	}
	return n
}

// CPUTicks is the CPU time of a process in clock ticks, summed over all its
// threads (/proc/PID/stat fields 14 and 15).
type CPUTicks struct {
	User int64 // utime
	Sys  int64 // stime
}

// Total is utime+stime.
func (c CPUTicks) Total() int64 { return c.User + c.Sys }

// CPU reads the CPU time of a process.
func CPU(pid int) (CPUTicks, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return CPUTicks{}, err
	}
	return ParseStatCPU(b)
}

var errStat = errors.New("procstat: malformed /proc/PID/stat")

// ParseStatCPU extracts utime and stime from the text of /proc/PID/stat.
// The command name (field 2) is in parentheses and may hold spaces and ')',
// so fields are counted from the last ')'.
func ParseStatCPU(b []byte) (CPUTicks, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return CPUTicks{}, errStat
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return CPUTicks{}, errStat
	}
	u, err1 := strconv.ParseInt(f[utime], 10, 64)
	s, err2 := strconv.ParseInt(f[stime], 10, 64)
	if err1 != nil || err2 != nil || u < 0 || s < 0 {
		return CPUTicks{}, errStat
	}
	return CPUTicks{User: u, Sys: s}, nil
}

// parseStatParent extracts the parent pid (field 4) and the start time
// (field 22, clock ticks after boot: with the pid it names one process) of
// /proc/PID/stat.
func parseStatParent(b []byte) (ppid int, start int64, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errStat
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) <= 22-3 {
		return 0, 0, errStat
	}
	ppid, err1 := strconv.Atoi(f[4-3])
	start, err2 := strconv.ParseInt(f[22-3], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, errStat
	}
	return ppid, start, nil
}

// DescendantsCPU is the CPU time of every living descendant of pid (its
// children, theirs, …; not pid itself), summed, and their number. A cluster
// target (cluster-target.sh) runs its backend shards as children of the
// measured gateway. A process that exits between two readings takes its
// CPU time with it.
func DescendantsCPU(pid int) (CPUTicks, int, error) {
	ds, err := Descendants(pid)
	var sum CPUTicks
	for _, p := range ds {
		sum.User += p.CPU.User
		sum.Sys += p.CPU.Sys
	}
	return sum, len(ds), err
}

// Entry is one process of /proc.
type Entry struct {
	PID, PPID int
	Start     int64 // start time, clock ticks after boot
	CPU       CPUTicks
}

// Descendants lists the living Descendants of pid.
func Descendants(pid int) ([]Entry, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var procs []Entry
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		ppid, start, err1 := parseStatParent(b)
		cpu, err2 := ParseStatCPU(b)
		if err1 == nil && err2 == nil {
			procs = append(procs, Entry{p, ppid, start, cpu})
		}
	}
	return DescendantsOf(pid, procs), nil
}

// DescendantsOf returns the Descendants of root among procs, nearest first.
func DescendantsOf(root int, procs []Entry) []Entry {
	children := map[int][]Entry{}
	for _, p := range procs {
		children[p.PPID] = append(children[p.PPID], p)
	}
	var out []Entry
	queue := append([]Entry(nil), children[root]...)
	seen := map[int]bool{root: true}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p.PID] {
			continue
		}
		seen[p.PID] = true
		out = append(out, p)
		queue = append(queue, children[p.PID]...)
	}
	return out
}

// SameProcess reports whether p is still running (not a zombie) under the
// same pid and start time, i.e. was not replaced by another process.
func SameProcess(p Entry) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return false
	}
	_, start, err := parseStatParent(b)
	if err != nil || start != p.Start {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// MemInfo is the memory of a process from /proc/PID/status, in bytes.
type MemInfo struct {
	RSS    int64 // VmRSS: resident set, all of user space
	Anon   int64 // RssAnon: resident anonymous memory (heap, stacks)
	VmHWM  int64 // peak resident set
	Thread int64 // number of threads
}

// DescendantsRSS is the resident memory of every living descendant of pid,
// summed: the baseline behind haproxy-target.sh, the shard behind
// cluster-target.sh. The mem scenario reports it beside the target's own.
func DescendantsRSS(pid int) (int64, error) {
	ds, err := Descendants(pid)
	var sum int64
	for _, p := range ds {
		if m, err := Mem(p.PID); err == nil {
			sum += m.RSS
		}
	}
	return sum, err
}

// Mem reads /proc/PID/status.
func Mem(pid int) (MemInfo, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return MemInfo{}, err
	}
	return ParseStatus(b)
}

// ParseStatus extracts the memory lines of /proc/PID/status ("VmRSS:  1234 kB").
func ParseStatus(b []byte) (MemInfo, error) {
	var m MemInfo
	seen := false
	for _, line := range strings.Split(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		switch key {
		case "VmRSS":
			m.RSS, seen = n, true
		case "RssAnon":
			m.Anon = n
		case "VmHWM":
			m.VmHWM = n
		case "Threads":
			m.Thread = n
		}
	}
	if !seen {
		return m, errors.New("gwbench: no VmRSS in /proc/PID/status")
	}
	return m, nil
}

// HostCPU returns the busy and stolen clock ticks of the whole machine
// (the "cpu" line of /proc/stat), to tell how much else ran during a
// measurement: busy is CPU used inside this machine, steal the time its
// virtual CPUs waited for the host.
func HostCPU() (busy, steal int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	return ParseProcStat(b)
}

// ParseProcStat reads the aggregate "cpu" line: user nice system idle
// iowait irq softirq steal …; idle, iowait and steal are not busy.
func ParseProcStat(b []byte) (busy, steal int64, err error) {
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, errors.New("procstat: malformed /proc/stat")
	}
	for i, s := range f[1:] {
		if i >= 8 { // guest time is already counted in user
			break
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, 0, errors.New("procstat: malformed /proc/stat")
		}
		switch i {
		case 3, 4: // idle, iowait
		case 7:
			steal = n
		default:
			busy += n
		}
	}
	return busy, steal, nil
}
