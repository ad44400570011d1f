package main

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

// clockTicks returns the kernel's clock ticks per second (getconf CLK_TCK).
func clockTicks() int64 {
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

// cpuTicks is the CPU time of a process in clock ticks, summed over all its
// threads (/proc/PID/stat fields 14 and 15).
type cpuTicks struct {
	User int64 // utime
	Sys  int64 // stime
}

// Total is utime+stime.
func (c cpuTicks) Total() int64 { return c.User + c.Sys }

// procCPU reads the CPU time of a process.
func procCPU(pid int) (cpuTicks, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpuTicks{}, err
	}
	return parseStatCPU(b)
}

var errStat = errors.New("gwbench: malformed /proc/PID/stat")

// parseStatCPU extracts utime and stime from the text of /proc/PID/stat.
// The command name (field 2) is in parentheses and may hold spaces and ')',
// so fields are counted from the last ')'.
func parseStatCPU(b []byte) (cpuTicks, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return cpuTicks{}, errStat
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return cpuTicks{}, errStat
	}
	u, err1 := strconv.ParseInt(f[utime], 10, 64)
	s, err2 := strconv.ParseInt(f[stime], 10, 64)
	if err1 != nil || err2 != nil || u < 0 || s < 0 {
		return cpuTicks{}, errStat
	}
	return cpuTicks{User: u, Sys: s}, nil
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

// descendantsCPU is the CPU time of every living descendant of pid (its
// children, theirs, …; not pid itself), summed, and their number. A cluster
// target (cluster-target.sh) runs its backend shards as children of the
// measured gateway. A process that exits between two readings takes its
// CPU time with it.
func descendantsCPU(pid int) (cpuTicks, int, error) {
	ds, err := descendants(pid)
	var sum cpuTicks
	for _, p := range ds {
		sum.User += p.cpu.User
		sum.Sys += p.cpu.Sys
	}
	return sum, len(ds), err
}

// procEntry is one process of /proc.
type procEntry struct {
	pid, ppid int
	start     int64 // start time, clock ticks after boot
	cpu       cpuTicks
}

// descendants lists the living descendants of pid.
func descendants(pid int) ([]procEntry, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var procs []procEntry
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
		cpu, err2 := parseStatCPU(b)
		if err1 == nil && err2 == nil {
			procs = append(procs, procEntry{p, ppid, start, cpu})
		}
	}
	return descendantsOf(pid, procs), nil
}

// descendantsOf returns the descendants of root among procs, nearest first.
func descendantsOf(root int, procs []procEntry) []procEntry {
	children := map[int][]procEntry{}
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p)
	}
	var out []procEntry
	queue := append([]procEntry(nil), children[root]...)
	seen := map[int]bool{root: true}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p.pid] {
			continue
		}
		seen[p.pid] = true
		out = append(out, p)
		queue = append(queue, children[p.pid]...)
	}
	return out
}

// sameProcess reports whether p is still running (not a zombie) under the
// same pid and start time, i.e. was not replaced by another process.
func sameProcess(p procEntry) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return false
	}
	_, start, err := parseStatParent(b)
	if err != nil || start != p.start {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// memInfo is the memory of a process from /proc/PID/status, in bytes.
type memInfo struct {
	RSS    int64 // VmRSS: resident set, all of user space
	Anon   int64 // RssAnon: resident anonymous memory (heap, stacks)
	VmHWM  int64 // peak resident set
	Thread int64 // number of threads
}

// procMem reads /proc/PID/status.
func procMem(pid int) (memInfo, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memInfo{}, err
	}
	return parseStatus(b)
}

// parseStatus extracts the memory lines of /proc/PID/status ("VmRSS:  1234 kB").
func parseStatus(b []byte) (memInfo, error) {
	var m memInfo
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

// hostCPU returns the busy and stolen clock ticks of the whole machine
// (the "cpu" line of /proc/stat), to tell how much else ran during a
// measurement: busy is CPU used inside this machine, steal the time its
// virtual CPUs waited for the host.
func hostCPU() (busy, steal int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseProcStat(b)
}

// parseProcStat reads the aggregate "cpu" line: user nice system idle
// iowait irq softirq steal …; idle, iowait and steal are not busy.
func parseProcStat(b []byte) (busy, steal int64, err error) {
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, errors.New("gwbench: malformed /proc/stat")
	}
	for i, s := range f[1:] {
		if i >= 8 { // guest time is already counted in user
			break
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, 0, errors.New("gwbench: malformed /proc/stat")
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
