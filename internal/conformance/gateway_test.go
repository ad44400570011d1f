package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// gatewayBin is the switchyard binary TestMain built.
var gatewayBin string

// Start-up bounds.
const (
	readyTimeout     = 20 * time.Second // process start to /readyz 200
	adminGracePeriod = 5 * time.Second  // fall back to the device port after this
	pollInterval     = 20 * time.Millisecond
	startAttempts    = 3 // retries when a picked port was taken meanwhile
)

// gwOptions are the gateway flags a test sets; zero values omit the flag.
type gwOptions struct {
	heartbeat        int           // --heartbeat, in seconds
	handshakeTimeout time.Duration // --handshake-timeout
	authSecrets      []string      // --auth-secret-file, one secret per line
	maxFrame         int           // --max-frame BYTES
	node             string        // --node NAME
}

// gateway is the gateway under test: one switchyard gateway process and,
// in cluster mode, the backend shards it sends its sessions to.
type gateway struct {
	*proc
	t      testing.TB
	mode   mode
	opts   gwOptions
	addr   string  // device port
	admin  string  // admin HTTP port
	shards []*proc // cluster mode: the backend shards, started before the gateway
}

// proc is one switchyard process the suite started (a gateway or a shard).
type proc struct {
	argv    []string
	cmd     *exec.Cmd
	out     *syncBuffer
	exited  chan struct{}
	waitErr error // valid after exited is closed
}

// syncBuffer collects a process's output for failure reports.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

// startGateway starts a gateway with opts in mode m and waits until it is
// ready (in cluster mode: until its ring holds both shards and devices get
// WELCOME). t.Cleanup kills every process it started.
func startGateway(t testing.TB, m mode, opts gwOptions) *gateway {
	t.Helper()
	var keyFile string
	if m == modeCluster {
		keyFile = writeClusterKey(t)
	}
	for attempt := 1; ; attempt++ {
		g, err := launch(t, m, opts, keyFile)
		if err == nil {
			err = g.waitReady()
		}
		if err == nil {
			return g
		}
		g.killAll()
		if !g.portTaken() || attempt == startAttempts {
			t.Fatalf("%s gateway %v did not become ready: %v\n%s", m, g.args(), err, g.outputs(4096))
		}
	}
}

// launch starts the processes of a gateway without waiting for readiness.
func launch(t testing.TB, m mode, opts gwOptions, keyFile string) (*gateway, error) {
	t.Helper()
	ports := freePorts(t, 2)
	g := &gateway{t: t, mode: m, opts: opts, addr: ports[0], admin: ports[1]}
	args := g.buildArgs()
	if m == modeCluster {
		var err error
		if args, err = g.launchShards(args, keyFile); err != nil {
			return g, err
		}
	}
	var err error
	g.proc, err = startProc(t, args)
	return g, err
}

// startProc starts the switchyard binary with argv; t.Cleanup kills it and,
// if the test failed, logs the tail of its output.
func startProc(t testing.TB, argv []string) (*proc, error) {
	p := &proc{argv: argv, out: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(gatewayBin, argv...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.WaitDelay = 2 * time.Second
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %v: %w", argv, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%v output (tail):\n%s", argv, p.out.tail(8192))
		}
	})
	return p, nil
}

// args is the gateway command line.
func (g *gateway) args() []string {
	if g.proc == nil {
		return nil
	}
	return g.argv
}

// procs lists the processes started so far, the gateway first.
func (g *gateway) procs() []*proc {
	var ps []*proc
	if g.proc != nil {
		ps = append(ps, g.proc)
	}
	return append(ps, g.shards...)
}

// killAll kills the gateway and its shards.
func (g *gateway) killAll() {
	for _, p := range g.procs() {
		p.kill()
	}
}

// portTaken reports whether a process failed because a picked port was
// taken meanwhile.
func (g *gateway) portTaken() bool {
	for _, p := range g.procs() {
		if strings.Contains(p.out.tail(4096), "address already in use") {
			return true
		}
	}
	return false
}

// outputs is the output tail of every process, for failure reports.
func (g *gateway) outputs(n int) string {
	var b strings.Builder
	for _, p := range g.procs() {
		fmt.Fprintf(&b, "output of %v:\n%s\n", p.argv, p.out.tail(n))
	}
	return b.String()
}

// buildArgs turns the options into flags.
func (g *gateway) buildArgs() []string {
	a := []string{"gateway", "--listen", g.addr, "--admin", g.admin}
	if g.opts.heartbeat > 0 {
		a = append(a, "--heartbeat", strconv.Itoa(g.opts.heartbeat)+"s")
	}
	if g.opts.handshakeTimeout > 0 {
		a = append(a, "--handshake-timeout", g.opts.handshakeTimeout.String())
	}
	if len(g.opts.authSecrets) > 0 {
		a = append(a, "--auth-secret-file", writeSecrets(g.t, g.opts.authSecrets))
	}
	if g.opts.maxFrame > 0 {
		a = append(a, "--max-frame", strconv.Itoa(g.opts.maxFrame))
	}
	if g.opts.node != "" {
		a = append(a, "--node", g.opts.node)
	}
	return a
}

// writeSecrets writes one secret per line, each ended by "\n".
func writeSecrets(t testing.TB, secrets []string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secrets")
	if err := os.WriteFile(path, []byte(strings.Join(secrets, "\n")+"\n"), 0o600); err != nil {
		t.Fatalf("write secret file: %v", err)
	}
	return path
}

// waitReady waits for readyAdmin and, in cluster mode, for waitCluster.
func (g *gateway) waitReady() error {
	if err := g.readyAdmin(); err != nil {
		return err
	}
	if g.mode == modeCluster {
		return g.waitCluster()
	}
	return nil
}

// readyAdmin polls /readyz until it answers 200. If the admin port refuses
// connections for adminGracePeriod, a device port that accepts counts as
// ready (the admin server is outside PROTOCOL.md).
func (g *gateway) readyAdmin() error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	deadline := start.Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		if err := g.requireRunning(); err != nil {
			return err
		}
		resp, err := client.Get("http://" + g.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("/readyz answered %s", resp.Status)
		} else {
			last = err
			if time.Since(start) > adminGracePeriod && g.deviceAccepts() {
				g.t.Logf("note: admin %s/readyz unreachable (%v); the device port accepts, proceeding", g.admin, err)
				return nil
			}
		}
		time.Sleep(pollInterval)
	}
	return fmt.Errorf("not ready after %v: %v", readyTimeout, last)
}

// requireRunning is an error once any of the gateway's processes exited.
func (g *gateway) requireRunning() error {
	for _, p := range g.procs() {
		if !p.alive() {
			return fmt.Errorf("%v exited: %v", p.argv, p.waitErr)
		}
	}
	return nil
}

func (g *gateway) deviceAccepts() bool {
	c, err := net.DialTimeout("tcp", g.addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// alive reports whether the process is still running.
func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// requireAlive fails the test if the gateway (or one of its shards) has
// exited.
func (g *gateway) requireAlive(t testing.TB) {
	t.Helper()
	if err := g.requireRunning(); err != nil {
		t.Fatalf("%v\n%s", err, g.outputs(4096))
	}
}

// signal sends sig to the gateway process.
func (g *gateway) signal(sig syscall.Signal) {
	g.t.Helper()
	if err := g.cmd.Process.Signal(sig); err != nil {
		g.t.Fatalf("signal gateway: %v", err)
	}
}

// waitExit waits up to d for the process to exit and returns its wait error.
func (p *proc) waitExit(d time.Duration) (error, bool) {
	select {
	case <-p.exited:
		return p.waitErr, true
	case <-time.After(d):
		return nil, false
	}
}

// kill stops the process (if running) and waits for it.
func (p *proc) kill() {
	if p.alive() {
		_ = p.cmd.Process.Kill()
	}
	<-p.exited
}

// freePorts picks n distinct free loopback addresses.
func freePorts(t testing.TB, n int) []string {
	t.Helper()
	var addrs []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("pick a free port: %v", err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return addrs
}

// findModuleRoot walks up from the working directory to the go.mod.
func findModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// buildGateway builds ./cmd/switchyard into dir and returns the binary path.
func buildGateway(dir string) (string, error) {
	root, err := findModuleRoot()
	if err != nil {
		return "", err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("go tool not found: %w", err)
	}
	bin := filepath.Join(dir, "switchyard")
	cmd := exec.Command(goTool, "build", "-o", bin, "./cmd/switchyard")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build -o %s ./cmd/switchyard in %s: %v\n%s", bin, root, err, out)
	}
	return bin, nil
}
