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
	heartbeat        int           // --heartbeat SECONDS
	handshakeTimeout time.Duration // --handshake-timeout
	authSecrets      []string      // --auth-secret-file, one secret per line
	maxFrame         int           // --max-frame BYTES
	node             string        // --node NAME
}

// gateway is one running switchyard process.
type gateway struct {
	t       testing.TB
	opts    gwOptions
	addr    string // device port
	admin   string // admin HTTP port
	argv    []string
	cmd     *exec.Cmd
	out     *syncBuffer
	exited  chan struct{}
	waitErr error // valid after exited is closed
}

// syncBuffer collects the gateway's output for failure reports.
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

// startGateway starts a gateway with opts and waits until it is ready.
// t.Cleanup kills it if it is still running.
func startGateway(t testing.TB, opts gwOptions) *gateway {
	t.Helper()
	for attempt := 1; ; attempt++ {
		g := launch(t, opts)
		err := g.waitReady()
		if err == nil {
			return g
		}
		g.kill()
		inUse := strings.Contains(g.out.tail(4096), "address already in use")
		if !inUse || attempt == startAttempts {
			t.Fatalf("gateway %v did not become ready: %v\noutput:\n%s", g.args(), err, g.out.tail(4096))
		}
	}
}

// launch starts the process without waiting for readiness.
func launch(t testing.TB, opts gwOptions) *gateway {
	t.Helper()
	ports := freePorts(t, 2)
	g := &gateway{t: t, opts: opts, addr: ports[0], admin: ports[1], out: &syncBuffer{}, exited: make(chan struct{})}
	g.argv = g.buildArgs()
	g.cmd = exec.Command(gatewayBin, g.argv...)
	g.cmd.Stdout = g.out
	g.cmd.Stderr = g.out
	g.cmd.WaitDelay = 2 * time.Second
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("start gateway: %v", err)
	}
	go func() {
		g.waitErr = g.cmd.Wait()
		close(g.exited)
	}()
	t.Cleanup(func() {
		g.kill()
		if t.Failed() {
			t.Logf("gateway %v output (tail):\n%s", g.args(), g.out.tail(8192))
		}
	})
	return g
}

// args is the gateway command line.
func (g *gateway) args() []string { return g.argv }

// buildArgs turns the options into flags.
func (g *gateway) buildArgs() []string {
	a := []string{"gateway", "--listen", g.addr, "--admin", g.admin}
	if g.opts.heartbeat > 0 {
		a = append(a, "--heartbeat", strconv.Itoa(g.opts.heartbeat))
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

// waitReady polls /readyz until it answers 200. If the admin port refuses
// connections for adminGracePeriod, a device port that accepts counts as
// ready (the admin server is outside PROTOCOL.md).
func (g *gateway) waitReady() error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	deadline := start.Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		if !g.alive() {
			return fmt.Errorf("process exited: %v", g.waitErr)
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

func (g *gateway) deviceAccepts() bool {
	c, err := net.DialTimeout("tcp", g.addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// alive reports whether the process is still running.
func (g *gateway) alive() bool {
	select {
	case <-g.exited:
		return false
	default:
		return true
	}
}

// requireAlive fails the test if the gateway process has exited.
func (g *gateway) requireAlive(t testing.TB) {
	t.Helper()
	if !g.alive() {
		t.Fatalf("gateway process exited: %v\noutput:\n%s", g.waitErr, g.out.tail(4096))
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
func (g *gateway) waitExit(d time.Duration) (error, bool) {
	select {
	case <-g.exited:
		return g.waitErr, true
	case <-time.After(d):
		return nil, false
	}
}

// kill stops the process (if running) and waits for it.
func (g *gateway) kill() {
	if g.alive() {
		_ = g.cmd.Process.Kill()
	}
	<-g.exited
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
