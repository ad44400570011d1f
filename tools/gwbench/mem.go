package main

import (
	"github.com/switchyard-gw/switchyard/internal/procstat"

	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// maxPerProc is the most sockets one client process may hold: the hard
// limit here is 20,000 open files per process, less room for the rest.
const maxPerProc = 19000

// memConfig are the parameters of the mem scenario.
type memConfig struct {
	N           int           // sessions to hold open
	PerProc     int           // most sessions held by one client process
	Concurrency int           // handshakes in flight per client process
	Payload     int           // size of the one DATA echoed per session
	Warmup      int           // sessions opened and closed before RSS_before
	Settle      time.Duration // wait after the last session is idle
	Late        time.Duration // wait before the second RSS reading
}

func (c *memConfig) flags(fs *flag.FlagSet, prefix string) {
	fs.IntVar(&c.N, prefix+"n", 15000, "sessions to open and keep idle")
	fs.IntVar(&c.PerProc, prefix+"per-proc", 10000, "most sessions per client process (each holds one fd per session)")
	fs.IntVar(&c.Concurrency, prefix+"concurrency", 32, "handshakes in flight per client process")
	fs.IntVar(&c.Payload, prefix+"payload", 64, "DATA payload echoed once per session, bytes")
	fs.IntVar(&c.Warmup, prefix+"warmup", 100, "sessions opened and closed before the first RSS reading")
	fs.DurationVar(&c.Settle, prefix+"settle", 3*time.Second, "wait after all sessions are idle before reading RSS")
	fs.DurationVar(&c.Late, prefix+"late", 5*time.Second, "further wait before the second RSS reading")
}

// runMem measures the target's RSS growth per idle session.
func runMem(ctx context.Context, t target, o common, c memConfig) (*Result, error) {
	if c.PerProc <= 0 || c.PerProc > maxPerProc {
		return nil, fmt.Errorf("gwbench: --per-proc %d: want 1..%d (the box allows 20,000 fds per process)", c.PerProc, maxPerProc)
	}
	r := newResult("mem", t)
	r.Params = map[string]any{"tls": o.tls, "n": c.N, "per_proc": c.PerProc, "concurrency": c.Concurrency,
		"payload": c.Payload, "warmup": c.Warmup, "settle_s": c.Settle.Seconds(), "late_s": c.Late.Seconds(),
		"src_spread": o.spread.n}
	if err := warmup(ctx, t, o, c); err != nil {
		return nil, fmt.Errorf("gwbench: mem warm-up: %w", err)
	}
	time.Sleep(time.Second)
	before, err := procstat.Mem(t.pid)
	if err != nil {
		return nil, err
	}
	childBefore, _ := procstat.DescendantsRSS(t.pid)
	start := time.Now()
	ws, err := startWorkers(t, o, c)
	defer stopWorkers(ws)
	if err != nil {
		return nil, err
	}
	opened, failed := 0, 0
	for _, w := range ws {
		if w.report.Failed < 0 {
			return nil, fmt.Errorf("gwbench: %v", w.report.Errors)
		}
		opened += w.report.Opened
		failed += w.report.Failed
		r.Notes = append(r.Notes, w.report.Errors...)
	}
	r.Results["open_seconds"] = time.Since(start).Seconds()
	time.Sleep(c.Settle)
	after, err := procstat.Mem(t.pid)
	if err != nil {
		return nil, err
	}
	childAfter, _ := procstat.DescendantsRSS(t.pid)
	time.Sleep(c.Late)
	late, err := procstat.Mem(t.pid)
	if err != nil {
		return nil, err
	}
	r.Results["sessions"] = float64(opened)
	r.Results["failed"] = float64(failed)
	r.Results["client_procs"] = float64(len(ws))
	r.Results["rss_before_bytes"] = float64(before.RSS)
	r.Results["rss_after_bytes"] = float64(after.RSS)
	r.Results["rss_late_bytes"] = float64(late.RSS)
	r.Results["bytes_per_session"] = perSession(before.RSS, after.RSS, opened)
	r.Results["bytes_per_session_late"] = perSession(before.RSS, late.RSS, opened)
	r.Results["anon_bytes_per_session"] = perSession(before.Anon, after.Anon, opened)
	r.Results["server_threads"] = float64(late.Thread)
	if childBefore > 0 || childAfter > 0 {
		// A target made of several processes (HAProxy and the baseline
		// behind it) holds each session in all of them.
		r.Results["children_rss_after_bytes"] = float64(childAfter)
		r.Results["children_rss_bytes_per_session"] = perSession(childBefore, childAfter, opened)
		r.Results["total_bytes_per_session"] = perSession(before.RSS+childBefore, after.RSS+childAfter, opened)
	}
	return r, nil
}

// warmup opens and closes c.Warmup sessions, each with one echo.
func warmup(ctx context.Context, t target, o common, c memConfig) error {
	payload := make([]byte, c.Payload)
	var buf []byte
	for i := 0; i < c.Warmup; i++ {
		conn, err := o.dial(ctx, i, t.addr)
		if err != nil {
			return err
		}
		id := "gwb-warm-" + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(i)
		err = handshake(conn, &buf, id, o.auth.token(id))
		if err == nil {
			err = echo(conn, &buf, payload)
		}
		conn.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// workerReport is what a memworker prints on stdout once its sessions are idle.
type workerReport struct {
	Opened int      `json:"opened"`
	Failed int      `json:"failed"`
	Errors []string `json:"errors,omitempty"`
}

type worker struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	report workerReport
}

// startWorkers starts one memworker process per share of sessions and
// waits until every one has reported its sessions open and idle.
func startWorkers(t target, o common, c memConfig) ([]*worker, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var ws []*worker
	base := 0
	run := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	for i, n := range fdShares(c.N, c.PerProc) {
		args := []string{"memworker", "--addr", t.addr, "--n", strconv.Itoa(n),
			"--first", strconv.Itoa(base), "--id-prefix", "gwb-" + run + "-" + strconv.Itoa(i) + "-",
			"--concurrency", strconv.Itoa(c.Concurrency), "--payload", strconv.Itoa(c.Payload),
			"--src-first", strconv.Itoa(o.spread.first), "--src-spread", strconv.Itoa(o.spread.n),
			"--auth-secret-file", o.secretFile, "--tls=" + strconv.FormatBool(o.tls)}
		base += n
		w := &worker{cmd: exec.Command(self, args...)}
		w.cmd.Stderr = os.Stderr
		if w.stdin, err = w.cmd.StdinPipe(); err != nil {
			return ws, err
		}
		out, err := w.cmd.StdoutPipe()
		if err != nil {
			return ws, err
		}
		if err := w.cmd.Start(); err != nil {
			return ws, err
		}
		ws = append(ws, w)
		go readReport(w, out)
	}
	return ws, waitReports(ws, 5*time.Minute)
}

var reportMu sync.Mutex

func readReport(w *worker, out io.Reader) {
	sc := bufio.NewScanner(out)
	var rep workerReport
	if !sc.Scan() {
		rep = workerReport{Failed: -1, Errors: []string{"memworker exited without a report"}}
	} else if err := json.Unmarshal(sc.Bytes(), &rep); err != nil {
		rep = workerReport{Failed: -1, Errors: []string{"bad memworker report: " + err.Error()}}
	}
	reportMu.Lock()
	w.report = rep
	reportMu.Unlock()
	io.Copy(io.Discard, out)
}

func waitReports(ws []*worker, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		done := 0
		reportMu.Lock()
		for _, w := range ws {
			if w.report.Opened > 0 || w.report.Failed != 0 {
				done++
			}
		}
		reportMu.Unlock()
		if done == len(ws) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("gwbench: mem workers did not report in time")
}

// stopWorkers closes the workers' stdin (they close their sessions and
// exit) and kills any that is still running 10 s later.
func stopWorkers(ws []*worker) {
	for _, w := range ws {
		w.stdin.Close()
	}
	for _, w := range ws {
		done := make(chan struct{})
		go func() { w.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			w.cmd.Process.Kill()
			<-done
		}
	}
}

// memWorker is the client process of the mem scenario: it opens n sessions
// with a few goroutines (one handshake and one echo each, one at a time per
// goroutine), keeps the sockets open and idle with no goroutine per
// connection, reports, and closes everything when stdin closes.
func memWorker(args []string) error {
	fs := flag.NewFlagSet("memworker", flag.ExitOnError)
	addr := fs.String("addr", "", "target address")
	n := fs.Int("n", 0, "sessions")
	first := fs.Int("first", 0, "index of the first session (for source spreading)")
	prefix := fs.String("id-prefix", "gwb-", "device id prefix")
	conc := fs.Int("concurrency", 32, "handshakes in flight")
	payloadSize := fs.Int("payload", 64, "echo payload size")
	var o common
	o.flags(fs)
	fs.Parse(args)
	if err := o.setup(); err != nil {
		return err
	}
	conns := make([]net.Conn, *n)
	var next, failed atomic.Int64
	var errMu sync.Mutex
	var errs []string
	var wg sync.WaitGroup
	payload := make([]byte, *payloadSize)
	for g := 0; g < *conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for {
				i := int(next.Add(1) - 1)
				if i >= *n {
					return
				}
				c, err := openIdle(o, *addr, *first+i, *prefix+strconv.Itoa(i), payload, &buf)
				if err != nil {
					failed.Add(1)
					errMu.Lock()
					if len(errs) < 5 {
						errs = append(errs, err.Error())
					}
					errMu.Unlock()
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	rep := workerReport{Opened: *n - int(failed.Load()), Failed: int(failed.Load()), Errors: errs}
	b, _ := json.Marshal(rep)
	fmt.Println(string(b))
	io.Copy(io.Discard, os.Stdin) // hold until the parent closes stdin
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	return nil
}

func openIdle(o common, addr string, i int, id string, payload []byte, buf *[]byte) (net.Conn, error) {
	c, err := o.dial(context.Background(), i, addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	err = handshake(c, buf, id, o.auth.token(id))
	if err == nil {
		err = echo(c, buf, payload)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
