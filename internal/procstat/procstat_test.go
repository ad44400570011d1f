package procstat

import (
	"os"
	"testing"
)

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name      string
		stat      string
		user, sys int64
		wantErr   bool
	}{
		{"plain", "1234 (switchyard) S 1 1234 1234 0 -1 4194560 2 0 0 0 150 37 0 0 20 0 9 0 100 0 0",
			150, 37, false},
		{"comm with spaces and parens", "42 (a b) c)) R 1 42 42 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 5 0 0", 7, 3, false},
		{"truncated", "42 (x) R 1 42 42 0 -1 0 0 0 0 0 7", 0, 0, true},
		{"no comm", "42 x R", 0, 0, true},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 ab 3 0 0", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStatCPU([]byte(tt.stat))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got.User != tt.user || got.Sys != tt.sys || got.Total() != tt.user+tt.sys {
				t.Fatalf("got %+v, want user %d sys %d", got, tt.user, tt.sys)
			}
		})
	}
}

func TestProcSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if _, err := CPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	m, err := Mem(os.Getpid())
	if err != nil || m.RSS <= 0 {
		t.Fatalf("Mem = %+v, %v", m, err)
	}
}

func TestParseStatus(t *testing.T) {
	status := "Name:\tswitchyard\nVmPeak:\t 1000 kB\nVmHWM:\t   2048 kB\nVmRSS:\t   1536 kB\n" +
		"RssAnon:\t    512 kB\nRssFile:\t1024 kB\nThreads:\t7\n"
	m, err := ParseStatus([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	want := MemInfo{RSS: 1536 << 10, Anon: 512 << 10, VmHWM: 2048 << 10, Thread: 7}
	if m != want {
		t.Fatalf("got %+v, want %+v", m, want)
	}
	if _, err := ParseStatus([]byte("Name:\tx\nThreads:\t1\n")); err == nil {
		t.Fatal("status without VmRSS: want an error")
	}
}

func TestParseProcStat(t *testing.T) {
	stat := "cpu  100 5 50 1000 20 3 7 11 0 0\ncpu0 50 2 25 500 10 1 3 0 0 0\n"
	busy, steal, err := ParseProcStat([]byte(stat))
	if err != nil || busy != 165 || steal != 11 {
		t.Fatalf("ParseProcStat = %d, %d, %v; want 165, 11", busy, steal, err)
	}
	if _, _, err := ParseProcStat([]byte("intr 1 2 3\n")); err == nil {
		t.Fatal("want an error without a cpu line")
	}
}

func TestDescendantsOf(t *testing.T) {
	procs := []Entry{
		{PID: 1, PPID: 0}, {PID: 10, PPID: 1}, {PID: 11, PPID: 10, CPU: CPUTicks{User: 3, Sys: 4}},
		{PID: 12, PPID: 11, CPU: CPUTicks{User: 1, Sys: 1}}, {PID: 13, PPID: 1, CPU: CPUTicks{User: 100, Sys: 100}},
	}
	got := DescendantsOf(10, procs)
	if len(got) != 2 || got[0].PID != 11 || got[1].PID != 12 {
		t.Fatalf("Descendants of 10 = %+v, want 11, 12", got)
	}
	if len(DescendantsOf(12, procs)) != 0 {
		t.Error("12 has no children")
	}
	// This test process has none either.
	if cpu, n, err := DescendantsCPU(os.Getpid()); err != nil || n != 0 || cpu.Total() != 0 {
		t.Errorf("DescendantsCPU(self) = %v, %d, %v", cpu, n, err)
	}
}

func TestParseSockstat(t *testing.T) {
	text := "sockets: used 2000\nTCP: inuse 1904 orphan 0 tw 12 alloc 1910 mem 37\nUDP: inuse 3 mem 2\n"
	inuse, mem := ParseSockstat(text)
	if inuse != 1904 || mem != 37*4096 {
		t.Fatalf("inuse %v mem %v, want 1904 and 37 pages", inuse, mem)
	}
}

// TestThisHost reads this machine: the tools stamp every result with it.
func TestThisHost(t *testing.T) {
	h := ThisHost()
	if h.NProc < 1 || h.MemTotal < 1<<20 || h.Kernel == "" || h.Go == "" {
		t.Fatalf("%+v", h)
	}
	if m := Meminfo(); m["MemAvailable"] <= 0 || m["MemAvailable"] > m["MemTotal"] {
		t.Errorf("MemAvailable %v of MemTotal %v", m["MemAvailable"], m["MemTotal"])
	}
}
