package procstat

import (
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Host says which machine produced a result; both benchmark tools put it
// in every JSON record.
type Host struct {
	Hostname string `json:"hostname"`
	Kernel   string `json:"kernel"` // uname -r
	NProc    int    `json:"nproc"`
	MemTotal int64  `json:"mem_total_bytes"`
	Go       string `json:"go"`
}

// ThisHost describes the machine this process runs on.
func ThisHost() Host {
	h := Host{NProc: runtime.NumCPU(), Go: runtime.Version()}
	h.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	h.MemTotal = int64(Meminfo()["MemTotal"])
	return h
}

// Meminfo reads /proc/meminfo in bytes ("MemAvailable: 123 kB" → 125952);
// an unreadable file gives an empty map.
func Meminfo() map[string]float64 {
	out := map[string]float64{}
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		f := strings.Fields(v)
		if !ok || len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseFloat(f[0], 64)
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		out[k] = n
	}
	return out
}

// TCPSockets reads /proc/net/sockstat: TCP sockets in use and the bytes
// of their buffers ("TCP: inuse N orphan N tw N alloc N mem PAGES").
func TCPSockets() (inuse, memBytes float64) {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0, 0
	}
	return ParseSockstat(string(b))
}

// ParseSockstat is TCPSockets on the text of /proc/net/sockstat.
func ParseSockstat(text string) (inuse, memBytes float64) {
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, "TCP:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			v, _ := strconv.ParseFloat(f[i+1], 64)
			switch f[i] {
			case "inuse":
				inuse = v
			case "mem":
				memBytes = v * float64(os.Getpagesize())
			}
		}
	}
	return inuse, memBytes
}

// TCPExt reads one TcpExt counter of /proc/net/netstat (a header line of
// names, then a line of values), e.g. "ListenDrops"; 0 if absent.
func TCPExt(name string) float64 {
	b, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return 0
	}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "TcpExt:") || !strings.HasPrefix(lines[i+1], "TcpExt:") {
			continue
		}
		names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for j := range names {
			if names[j] == name && j < len(vals) {
				v, _ := strconv.ParseFloat(vals[j], 64)
				return v
			}
		}
	}
	return 0
}
