// Command loadgen drives many device sessions against Switchyard gateways
// and measures what they get back.
//
// Sessions are spread over a few worker goroutines, each owning many
// non-blocking sockets through epoll (no goroutine per session), and, past
// one process's share of open files, over child processes that report to
// the parent as JSON lines on a pipe.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// config is the whole run, as the flags give it; children get it as JSON.
type config struct {
	Addrs      []string      `json:"addrs"`
	Sessions   int           `json:"sessions"`
	Ramp       float64       `json:"ramp"`
	Duration   time.Duration `json:"duration"`
	Drain      time.Duration `json:"drain"`
	Rate       float64       `json:"rate"`
	Window     int           `json:"window"`
	Payload    int           `json:"payload"`
	Reliable   bool          `json:"reliable"`
	SecretFile string        `json:"secret_file"`
	Heartbeat  time.Duration `json:"heartbeat"`
	HBGrid     time.Duration `json:"heartbeat_grid"`
	Resend     time.Duration `json:"resend"`
	Procs      int           `json:"procs"`
	PerProc    int           `json:"per_proc"`
	SrcSpread  int           `json:"src_spread"`
	Workers    int           `json:"workers"`
	IDPrefix   string        `json:"id_prefix"`
	JSON       string        `json:"-"`
	Incidents  string        `json:"incidents"`
	Verify     bool          `json:"verify"`
	Idle       bool          `json:"idle"`
	Quiet      bool          `json:"-"`
}

const usageHead = `loadgen drives many device sessions against Switchyard gateways.

Usage: go run ./tools/loadgen [flags]

Each session connects (round-robin over --addr), does HELLO/WELCOME, sends
DATA either open loop (--rate frames/s per session, on a fixed schedule;
latency is taken from the SCHEDULED send time, so a late client or a slow
gateway shows up as latency: no coordinated omission) or closed loop
(--window frames in flight per session), PINGs when idle for hb, answers
reliable downstream DATA with ACK, and reconnects (resuming its session)
when the connection is lost: where a GOAWAY sent it, else at the next
--addr (the gateway may be gone). Disconnects are counted by cause
(goaway, error_<code>, eof, reset, …); --incidents logs each, and each
--verify violation, with its time and gateway. Sessions run on a few epoll workers, never a
goroutine each; past --per-proc sockets they are spread over child
processes (automatically), which report to this one over a pipe.

A progress line goes to stderr every second; a JSON summary to stdout (or
--json FILE) at the end. SIGINT or SIGTERM ends the load early: the
sessions drain (--drain) and the summary is written as at the planned end.
SIGUSR1 cuts every connection at once (a reset) and lets each session
reconnect with the client's backoff: a reconnect storm (counted as
storm_cuts; the sessions resume). Exit status: 0 ok, 1 --verify found a violation
(or no session came up), 2 bad usage.

Flags:
`

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var addrs string
	fs.StringVar(&addrs, "addr", "127.0.0.1:7400", "comma-separated gateway addresses (IPv4 host:port); sessions are assigned round-robin")
	fs.IntVar(&c.Sessions, "sessions", 100, "number of device sessions `N`")
	fs.Float64Var(&c.Ramp, "ramp", 1000, "sessions started per second (0: all at once)")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "load time after the last session started (total = sessions/ramp + duration)")
	fs.DurationVar(&c.Drain, "drain", 3*time.Second, "after the load, longest wait for outstanding replies and ACKs")
	fs.Float64Var(&c.Rate, "rate", 0, "open loop: DATA frames/s per session on a fixed schedule, latency from the scheduled send time (exclusive with --window; default 1 when neither is set)")
	fs.IntVar(&c.Window, "window", 0, "closed loop: DATA frames in flight per session (exclusive with --rate)")
	fs.IntVar(&c.Payload, "payload", 64, "DATA payload bytes (at least 20: magic, send time, counter)")
	fs.BoolVar(&c.Reliable, "reliable", false, "send reliable DATA (ACK_REQUESTED, numbered seq; resent after a resume)")
	fs.StringVar(&c.SecretFile, "secret-file", "", "auth: file whose first line is the gateway secret; HELLO tokens are made with protocol.MakeToken")
	fs.DurationVar(&c.Resend, "resend", 10*time.Second, "send the unacknowledged reliable DATA again when the oldest has waited this long for its ACK, as the Go client does (0: only after a reconnect)")
	fs.DurationVar(&c.Heartbeat, "heartbeat", 0, "PING after this much idle time instead of the hb from WELCOME (0: use WELCOME's hb)")
	fs.DurationVar(&c.HBGrid, "heartbeat-grid", 0, "PINGs fall due on a wall-clock grid of this step (rounded up; at most a quarter of the heartbeat): every process's PINGs due in one step go out together, as a gateway with many devices sees them, instead of one wake-up per PING in a gateway with few (0: off; docs/scale.md)")
	fs.IntVar(&c.Procs, "procs", 0, "child processes to spread sessions over (0: automatic, as many as --per-proc needs; 1 or 0 with few sessions: this process)")
	fs.IntVar(&c.PerProc, "per-proc", defaultPerProc, "most sessions (sockets) per process; more sessions than this start child processes automatically")
	fs.IntVar(&c.SrcSpread, "src-spread", 0, "source addresses 127.0.0.2… to spread sessions over (session g binds 127.0.0.(2+g mod N)); 0: automatic (only when one address per destination runs out of ports), -1: never bind")
	fs.IntVar(&c.Workers, "workers", runtime.GOMAXPROCS(0), "epoll worker goroutines per process")
	fs.StringVar(&c.IDPrefix, "id-prefix", "", "device id prefix (default: lg-<pid>-)")
	fs.StringVar(&c.JSON, "json", "", "write the JSON summary to `FILE` instead of stdout")
	fs.StringVar(&c.Incidents, "incidents", "", "append one JSON line per connection that ended (its cause: goaway, error_<code>, eof, reset, …) and per --verify violation to `FILE`, with the time, gateway address and device id (tools/chaos reads it)")
	fs.BoolVar(&c.Verify, "verify", false, "every session sends numbered reliable DATA (implies --reliable) and checks the replies of the echo or counter backend per direction: lost, duplicated, reordered; with the counter backend (replies \"<shard> <count>\") also a count back at 1 (state reset) and a count beyond the frames sent (handled twice), and it counts the replies that name a new shard (shard_changes: moves the device saw); non-zero exit on any violation")
	fs.BoolVar(&c.Idle, "idle", false, "no DATA at all: sessions only heartbeat (the scale test's load; exclusive with --rate, --window and --verify)")
	fs.BoolVar(&c.Quiet, "quiet", false, "no progress lines")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	for _, a := range strings.Split(addrs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.Addrs = append(c.Addrs, a)
		}
	}
	if c.IDPrefix == "" {
		c.IDPrefix = "lg-" + strconv.Itoa(os.Getpid()) + "-"
	}
	if c.Verify {
		c.Reliable = true
	}
	if c.Idle && (c.Rate != 0 || c.Window != 0 || c.Verify) {
		return nil, errors.New("--idle excludes --rate, --window and --verify")
	}
	if c.Rate == 0 && c.Window == 0 && !c.Idle {
		c.Rate = 1
	}
	return c, c.validate()
}

func (c *config) validate() error {
	var errs []error
	if len(c.Addrs) == 0 {
		errs = append(errs, errors.New("--addr: no address"))
	}
	if _, err := resolve(c.Addrs); err != nil {
		errs = append(errs, err)
	}
	if c.Sessions < 1 {
		errs = append(errs, errors.New("--sessions must be at least 1"))
	}
	if c.Rate > 0 && c.Window > 0 {
		errs = append(errs, errors.New("--rate and --window exclude each other"))
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) || c.Window < 0 {
		errs = append(errs, errors.New("--rate and --window must be finite and >= 0"))
	}
	if c.Ramp < 0 || c.Duration < 0 || c.Drain < 0 || c.Heartbeat < 0 || c.HBGrid < 0 {
		errs = append(errs, errors.New("--ramp, --duration, --drain, --heartbeat, --heartbeat-grid must be >= 0"))
	}
	if c.HBGrid > 0 && c.Heartbeat > 0 && c.HBGrid > c.Heartbeat/4 {
		errs = append(errs, errors.New("--heartbeat-grid must be at most a quarter of --heartbeat"))
	}
	if c.Payload < minPayload || c.Payload > 65536 {
		errs = append(errs, fmt.Errorf("--payload must be %d…65536", minPayload))
	}
	if c.Workers < 1 || c.PerProc < 1 || c.Procs < 0 {
		errs = append(errs, errors.New("--workers, --per-proc must be >= 1, --procs >= 0"))
	}
	return errors.Join(errs...)
}

// readSecret reads the first line of a secret file.
func readSecret(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return nil, errors.New("loadgen: empty secret in " + path)
	}
	return []byte(line), nil
}

// childEnv carries a child's part of the run.
const childEnv = "LOADGEN_CHILD"

type childSpec struct {
	Cfg   *config `json:"cfg"`
	Index int     `json:"index"`
	First int     `json:"first"`
	Count int     `json:"count"`
	Base  int64   `json:"base"` // unix ns: the run's common start
}

// line is one JSON line from a child.
type line struct {
	Kind  string `json:"kind"` // "progress" or "final"
	Up    int64  `json:"up"`
	Stats *Stats `json:"stats"`
	Error string `json:"error,omitempty"`
}

func main() {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(childMain(spec, os.Stdout))
	}
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 2
	}
	sum, err := run(cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 2
	}
	out, _ := json.MarshalIndent(sum, "", "  ")
	out = append(out, '\n')
	if cfg.JSON != "" {
		if err := os.WriteFile(cfg.JSON, out, 0o644); err != nil {
			fmt.Fprintln(stderr, "loadgen:", err)
			return 2
		}
	} else {
		stdout.Write(out)
	}
	if sum.Handshakes == 0 {
		fmt.Fprintln(stderr, "loadgen: no session came up")
		return 1
	}
	if cfg.Verify && !sum.Verify.OK {
		fmt.Fprintln(stderr, "loadgen: --verify: violations found")
		return 1
	}
	return 0
}

// run drives the whole load, in this process or in children, and
// returns the merged summary.
func run(cfg *config, stderr io.Writer) (*summary, error) {
	secret, err := readSecret(cfg.SecretFile)
	if err != nil {
		return nil, err
	}
	dst, err := resolve(cfg.Addrs)
	if err != nil {
		return nil, err
	}
	src, err := autoSources(cfg.SrcSpread, cfg.Sessions, len(dst))
	if err != nil {
		return nil, err
	}
	shares := procShares(cfg.Sessions, cfg.Procs, cfg.PerProc)
	inc, err := openIncidents(cfg.Incidents)
	if err != nil {
		return nil, err
	}
	if inc != nil {
		defer inc.Close()
	}
	base := time.Now()
	a := newAgg()
	loadEnd := startAt(cfg.Sessions-1, cfg.Ramp) + int64(20*time.Millisecond) + int64(cfg.Duration)
	done := make(chan error, 1)
	if len(shares) <= 1 && cfg.Procs <= 1 {
		e := &engine{cfg: cfg, base: base, dst: dst, src: src, agg: a, first: 0, count: cfg.Sessions,
			endAt: loadEnd, secret: secret, inc: inc}
		defer stopOnSignal(e)()
		go func() { done <- e.run() }()
	} else {
		go func() { done <- runChildren(cfg, shares, base, a, stderr) }()
	}
	stopProgress := make(chan struct{})
	var pwg sync.WaitGroup
	var secs []second
	pwg.Add(1)
	go func() { defer pwg.Done(); secs = progress(a, base, cfg, stderr, stopProgress) }()
	err = <-done
	close(stopProgress)
	pwg.Wait()
	if err != nil {
		return nil, err
	}
	wall := time.Since(base)
	sum := summarize(cfg, a.total, len(shares), src, wall, time.Duration(loadEnd))
	sum.Seconds = secs
	return sum, nil
}

// stopOnSignal ends e's load early on SIGINT or SIGTERM (it drains and
// reports as at the planned end); the function it returns stops
// listening. (With children, runChildren forwards the signal to them.)
func stopOnSignal(e *engine) func() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGUSR1)
	fin := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sig:
				if s == syscall.SIGUSR1 {
					e.storms.Add(1) // a reconnect storm (engine.storm)
					e.wake()
					continue
				}
				e.stop.Store(true)
				e.wake()
				return
			case <-fin:
				return
			}
		}
	}()
	return func() {
		signal.Stop(sig)
		close(fin)
	}
}

// progress prints a line every second until stop and returns a row of
// connection counters per second (the last one for the time since the
// last line).
func progress(a *agg, base time.Time, cfg *config, w io.Writer, stop <-chan struct{}) []second {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := time.Now()
	var secs []second
	for {
		select {
		case <-stop:
			s, up := a.interval()
			return append(secs, newSecond(time.Since(base), up, s))
		case now := <-t.C:
			s, up := a.interval()
			secs = append(secs, newSecond(now.Sub(base), up, s))
			if cfg.Quiet {
				continue
			}
			sec := now.Sub(last).Seconds()
			last = now
			fmt.Fprintf(w, "loadgen: t=%4.0fs up=%d/%d sent/s=%.0f recv/s=%.0f p50=%s p99=%s errors=%d disc=%d reconn=%d moved=%d\n",
				now.Sub(base).Seconds(), up, cfg.Sessions, float64(s.C[cSent])/sec, float64(s.C[cReceived])/sec,
				fmtDur(s.Lat.ValueAtQuantile(50)), fmtDur(s.Lat.ValueAtQuantile(99)), s.errorTotal(), s.C[cDisconnects], s.C[cReconnects], s.C[cShardChanges])
		}
	}
}

func fmtDur(ns int64) string {
	return time.Duration(ns).Round(time.Microsecond).String()
}

// runChildren starts one child process per share and merges their lines.
func runChildren(cfg *config, shares []share, base time.Time, a *agg, stderr io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(shares))
	var cmds []*exec.Cmd
	for i, sh := range shares {
		spec, _ := json.Marshal(childSpec{Cfg: cfg, Index: i, First: sh.First, Count: sh.Count, Base: base.UnixNano()})
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
		cmd.Stderr = stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			for _, c := range cmds {
				c.Process.Kill()
				c.Wait()
			}
			return err
		}
		cmds = append(cmds, cmd)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = readChild(i, out, a)
			if err := cmd.Wait(); err != nil && errs[i] == nil {
				errs[i] = fmt.Errorf("child %d: %w", i, err)
			}
		}()
	}
	// Forward an interrupt to the children (by pid) and let them finish.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGUSR1)
	defer signal.Stop(sig)
	fin := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sig:
				fwd := syscall.SIGTERM
				if s == syscall.SIGUSR1 {
					fwd = syscall.SIGUSR1 // a storm: every child's devices at once
				}
				for _, c := range cmds {
					c.Process.Signal(fwd)
				}
				if fwd == syscall.SIGTERM {
					return
				}
			case <-fin:
				return
			}
		}
	}()
	wg.Wait()
	close(fin)
	return errors.Join(errs...)
}

// readChild merges a child's JSON lines into a.
func readChild(i int, r io.Reader, a *agg) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	final := false
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("child %d: bad line: %w", i, err)
		}
		if l.Error != "" {
			return fmt.Errorf("child %d: %s", i, l.Error)
		}
		if l.Stats != nil {
			l.Stats.unwire()
			a.add(l.Stats)
		}
		a.setUp(i, l.Up)
		if l.Kind == "final" {
			final = true
		}
	}
	if !final {
		return fmt.Errorf("child %d: no final report", i)
	}
	return sc.Err()
}

// childMain runs one child's share and reports on stdout (JSON lines).
func childMain(specJSON string, stdout io.Writer) int {
	var spec childSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen child:", err)
		return 2
	}
	cfg := spec.Cfg
	out := json.NewEncoder(stdout)
	fail := func(err error) int {
		out.Encode(line{Kind: "final", Error: err.Error()})
		return 2
	}
	secret, err := readSecret(cfg.SecretFile)
	if err != nil {
		return fail(err)
	}
	dst, err := resolve(cfg.Addrs)
	if err != nil {
		return fail(err)
	}
	src, err := autoSources(cfg.SrcSpread, cfg.Sessions, len(dst))
	if err != nil {
		return fail(err)
	}
	// The run's common start aligns the children's ramps. A child that
	// starts late (exec of a -race binary on a loaded box takes seconds)
	// starts its schedule when it is up: measured from the common start,
	// the whole schedule could already be over and it would open nothing.
	inc, err := openIncidents(cfg.Incidents)
	if err != nil {
		return fail(err)
	}
	if inc != nil {
		defer inc.Close()
	}
	base := time.Unix(0, spec.Base)
	if now := time.Now(); now.After(base) {
		base = now
	}
	a := newAgg()
	e := &engine{cfg: cfg, base: base, dst: dst, src: src, agg: a, first: spec.First, count: spec.Count,
		endAt: startAt(cfg.Sessions-1, cfg.Ramp) + int64(20*time.Millisecond) + int64(cfg.Duration), secret: secret, inc: inc}
	done := make(chan error, 1)
	defer stopOnSignal(e)()
	go func() { done <- e.run() }()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fail(err)
			}
			s, up := a.interval()
			out.Encode(line{Kind: "final", Up: up, Stats: s.wire()})
			return 0
		case <-t.C:
			s, up := a.interval()
			out.Encode(line{Kind: "progress", Up: up, Stats: s.wire()})
		}
	}
}
