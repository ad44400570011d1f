package main

import (
	"github.com/switchyard-gw/switchyard/internal/procstat"

	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// targetSpec is a server the compare mode starts itself.
type targetSpec struct {
	name string
	cmd  string // command line with {addr}, {port}, {admin}, {admin_port}
}

type targetList []targetSpec

func (l *targetList) String() string { return fmt.Sprint(*l) }

func (l *targetList) Set(v string) error {
	name, cmd, ok := strings.Cut(v, "=")
	if !ok || name == "" || strings.TrimSpace(cmd) == "" {
		return fmt.Errorf("target %q: want NAME=COMMAND", v)
	}
	*l = append(*l, targetSpec{name: name, cmd: cmd})
	return nil
}

// compareConfig are the options of the compare mode.
type compareConfig struct {
	targets   targetList
	scenarios string
	reps      int
	baseline  string
	md        string
	logDir    string
	tls       string // targets the driver speaks TLS to, comma-separated
}

// runCompare starts each target on free ports, runs every scenario against
// each in turn (reps times, interleaved, a fresh server process per run),
// stops them, and prints a markdown table of medians with ratios to the
// baseline target.
func runCompare(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("compare", flag.ExitOnError)
	var cc compareConfig
	var o common
	var sc scenarioConfig
	fs.Var(&cc.targets, "target", "NAME=COMMAND, repeatable; COMMAND may use {addr} {port} {admin} {admin_port}, and {free1} … {free4}: further free loopback ports")
	fs.StringVar(&cc.scenarios, "scenarios", "mem,cpu,handshake", "scenarios to run, in order")
	fs.IntVar(&cc.reps, "reps", 3, "runs of each scenario per target; the table shows medians")
	fs.StringVar(&cc.baseline, "baseline", "", "target the ratios are relative to (default: the first)")
	fs.StringVar(&cc.md, "md", "", "also write the markdown table to this file")
	fs.StringVar(&cc.logDir, "logdir", os.TempDir(), "where the servers' stdout and stderr go")
	fs.StringVar(&cc.tls, "tls-targets", "", "names of the targets spoken to over TLS (comma-separated; certificates not verified)")
	o.flags(fs)
	sc.mem.flags(fs, "mem-")
	sc.cpu.flags(fs, "cpu-")
	sc.hs.flags(fs, "hs-")
	fs.Parse(args)
	if len(cc.targets) == 0 {
		return errors.New("gwbench: compare needs at least one --target")
	}
	if cc.baseline == "" {
		cc.baseline = cc.targets[0].name
	}
	if err := o.setup(); err != nil {
		return err
	}
	var results []*Result
	for _, scen := range strings.Split(cc.scenarios, ",") {
		for rep := 1; rep <= cc.reps; rep++ {
			for _, ts := range cc.targets {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				o := o
				o.tls = o.tls || slices.Contains(strings.Split(cc.tls, ","), ts.name)
				r, err := runManaged(ctx, ts, scen, rep, cc, o, sc)
				if err != nil && ctx.Err() == nil {
					fmt.Fprintf(os.Stderr, "gwbench: %s %s rep %d: %v; retrying once\n", ts.name, scen, rep, err)
					r, err = runManaged(ctx, ts, scen, rep, cc, o, sc)
				}
				if err != nil {
					fmt.Fprintf(os.Stderr, "gwbench: %s %s rep %d: %v\n", ts.name, scen, rep, err)
					continue
				}
				r.Params["rep"] = rep
				r.Params["command"] = ts.cmd
				if err := r.emit(o.out); err != nil {
					return err
				}
				results = append(results, r)
			}
		}
	}
	table := markdownTable(results, cc.targets.names(), cc.baseline)
	fmt.Print(table)
	if cc.md != "" {
		return os.WriteFile(cc.md, []byte(table), 0o644)
	}
	return nil
}

func (l targetList) names() []string {
	var out []string
	for _, t := range l {
		out = append(out, t.name)
	}
	return out
}

// runManaged runs one scenario against a fresh server process.
func runManaged(ctx context.Context, ts targetSpec, scen string, rep int, cc compareConfig, o common, sc scenarioConfig) (*Result, error) {
	logPath := filepath.Join(cc.logDir, fmt.Sprintf("gwbench-%s-%s-%d.log", ts.name, scen, rep))
	srv, err := startServer(ts, logPath)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	if err := waitReady(ctx, srv, o, 30*time.Second); err != nil {
		return nil, fmt.Errorf("%w (log: %s)", err, logPath)
	}
	return runScenario(ctx, scen, srv.target, o, sc)
}

// server is a target process started by compare.
type server struct {
	target
	cmd  *exec.Cmd
	done chan struct{}
}

func startServer(ts targetSpec, logPath string) (*server, error) {
	ports, err := freePorts(2 + extraPorts)
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	line := expandCommand(ts.cmd, addr, ports)
	argv := strings.Fields(line)
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("gwbench: start %s: %w", ts.name, err)
	}
	s := &server{target: target{name: ts.name, addr: addr, pid: cmd.Process.Pid}, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(s.done) }()
	return s, nil
}

// extraPorts is the number of further free ports a command may use,
// {free1} … {free4} (a cluster target's link and gossip ports).
const extraPorts = 4

// expandCommand fills the placeholders of a target's command line: {addr}
// {port} (ports[0]), {admin} {admin_port} (ports[1]), {free1} … (ports[2:]).
func expandCommand(cmd, addr string, ports []int) string {
	kv := []string{"{addr}", addr, "{port}", strconv.Itoa(ports[0]),
		"{admin}", "127.0.0.1:" + strconv.Itoa(ports[1]), "{admin_port}", strconv.Itoa(ports[1])}
	for i, p := range ports[2:] {
		kv = append(kv, "{free"+strconv.Itoa(i+1)+"}", strconv.Itoa(p))
	}
	return strings.NewReplacer(kv...).Replace(cmd)
}

// stop sends SIGTERM and, after 10 s, SIGKILL; it waits for the exit. A
// target's own child processes (cluster-target.sh's backend shards) should
// end with it; any still running 3 s later is killed, by pid, if it is
// still the process that was its child.
func (s *server) stop() {
	kids, _ := procstat.Descendants(s.pid)
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		alive := kids[:0]
		for _, k := range kids {
			if procstat.SameProcess(k) {
				alive = append(alive, k)
			}
		}
		kids = alive
		if len(kids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, k := range kids {
				fmt.Fprintf(os.Stderr, "gwbench: %s: child %d outlived it; killing it\n", s.name, k.PID)
				syscall.Kill(k.PID, syscall.SIGKILL)
			}
			return
		}
	}
}

// waitReady polls until one full handshake succeeds.
func waitReady(ctx context.Context, s *server, o common, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var buf []byte
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("gwbench: %s exited during start-up", s.name)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		var c net.Conn
		if c, err = o.dial(ctx, 0, s.addr); err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			err = handshake(c, &buf, "gwb-ready", o.auth.token("gwb-ready"))
			c.Close()
			if err == nil {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("gwbench: %s not ready: %v", s.name, err)
}

// freePorts returns n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
