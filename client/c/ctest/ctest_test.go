package ctest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/internal/leakcheck"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/internal/testcluster"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m, func() {
		testcluster.RemoveBinary()
		if progs.dir != "" {
			_ = os.RemoveAll(progs.dir)
		}
	})
}

// cFlags are the flags every C program is built with: the brief's C99
// with warnings as errors, and both sanitizers aborting on the first
// finding.
var cFlags = []string{"-std=c99", "-Wall", "-Wextra", "-Werror", "-g", "-O1",
	"-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"}

// runTimeout bounds one C program; the scenarios take a few seconds.
const runTimeout = 2 * time.Minute

// progs are the C programs, built once per test binary.
var progs struct {
	once                sync.Once
	dir                 string
	unit, integ, device string
	err                 error
	skip                string
}

// cProgs builds the C programs (or skips the test without a compiler,
// unless SWITCHYARD_REQUIRE_CC=1).
func cProgs(t *testing.T) {
	t.Helper()
	progs.once.Do(buildProgs)
	if progs.skip != "" {
		if os.Getenv("SWITCHYARD_REQUIRE_CC") == "1" {
			t.Fatalf("%s (SWITCHYARD_REQUIRE_CC=1)", progs.skip)
		}
		t.Skip(progs.skip)
	}
	if progs.err != nil {
		t.Fatal(progs.err)
	}
}

// compiler is the C compiler: SWITCHYARD_CC, or gcc.
func compiler() string {
	if cc := os.Getenv("SWITCHYARD_CC"); cc != "" {
		return cc
	}
	return "gcc"
}

func buildProgs() {
	cc := compiler()
	if _, err := exec.LookPath(cc); err != nil {
		progs.skip = fmt.Sprintf("%s not found: install Debian's gcc (apt-get install gcc) or run make test-c as root", cc)
		return
	}
	dir, err := os.MkdirTemp("", "switchyard-ctest-")
	if err != nil {
		progs.err = err
		return
	}
	progs.dir = dir
	src := filepath.Join("..")
	for _, p := range []struct {
		out  *string
		name string
		main string
	}{
		{&progs.unit, "unit", "test/unit.c"},
		{&progs.integ, "integ", "test/integ.c"},
		{&progs.device, "device", "examples/device.c"},
	} {
		*p.out = filepath.Join(dir, p.name)
		args := append(append([]string{}, cFlags...), "-o", *p.out, filepath.Join(src, p.main), filepath.Join(src, "switchyard.c"))
		if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
			progs.err = fmt.Errorf("%s %s: %v\n%s", cc, strings.Join(args, " "), err, out)
			return
		}
	}
}

// TestUnit runs the C unit tests: codec, MessagePack, maps, tokens, the
// protocol test vectors, split at every byte.
func TestUnit(t *testing.T) {
	cProgs(t)
	out := run(t, exec.Command(progs.unit, filepath.Join("..", "..", "..", "protocol", "testdata", "vectors.txt")))
	if !strings.Contains(out, "all unit checks passed") {
		t.Fatalf("unit: %s", out)
	}
}

// TestEchoAckTakeover: reliable and best-effort echo, upstream ACKs,
// downstream ACKs reaching the gateway, a takeover by resume (409 to the
// older connection, which stops).
func TestEchoAckTakeover(t *testing.T) {
	t.Parallel()
	cProgs(t)
	g := startGateway(t)
	scenario(t, "echo", g.addr)
}

// TestResumeRedelivery: unacknowledged downstream DATA comes again after
// a resume, unsent upstream DATA is resent, in order, same session.
func TestResumeRedelivery(t *testing.T) {
	t.Parallel()
	cProgs(t)
	g := startGateway(t)
	scenario(t, "resume", g.addr)
}

// TestHeartbeat: an idle C client keeps its session past the gateway's
// idle close (3 × hb) by sending PINGs.
func TestHeartbeat(t *testing.T) {
	t.Parallel()
	cProgs(t)
	g := startGateway(t, "--heartbeat", "1s")
	scenario(t, "heartbeat", g.addr)
}

// TestRateLimit: frames dropped with ERROR 429 (connection kept) are sent
// again from the last ACK a second later, until all are through, each
// echoed once and in order.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	cProgs(t)
	g := startGateway(t, "--rate", "20", "--rate-burst", "10")
	scenario(t, "ratelimit", g.addr)
}

// TestAuth: tokens made by the C client from the secret, or given to it,
// are accepted; a wrong or missing token is 401 and the client stops.
func TestAuth(t *testing.T) {
	t.Parallel()
	cProgs(t)
	const secret = "c-client secret/with+chars"
	file := filepath.Join(t.TempDir(), "secrets")
	if err := os.WriteFile(file, []byte("another-secret\n"+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, "--auth-secret-file", file)
	scenario(t, "auth", g.addr, secret)
}

// TestTransport: the client over its cfg.io_* callbacks (plain TCP made
// awkward: short reads and writes, SY_WANT_READ/SY_WANT_WRITE as a TLS
// layer answers, an io_open that fails once) echoes, ACKs and resumes.
func TestTransport(t *testing.T) {
	t.Parallel()
	cProgs(t)
	g := startGateway(t)
	scenario(t, "transport", g.addr)
}

// TestGoAwayRedirect: a gateway drained by SIGTERM sends GOAWAY with a
// redirect; the C client reconnects there and its DATA flows again.
func TestGoAwayRedirect(t *testing.T) {
	t.Parallel()
	cProgs(t)
	b := startGateway(t, "--node", "gw-b")
	a := startGateway(t, "--node", "gw-a", "--redirect", b.addr, "--goaway-retry", "500ms", "--drain-timeout", "3s")
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, progs.integ, "goaway", a.addr, "gw-b")
	out := &syncBuffer{}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	ready := false
	for sc.Scan() {
		fmt.Fprintln(out, sc.Text())
		if sc.Text() == "ready" && !ready {
			ready = true
			a.signal(t, syscall.SIGTERM)
		}
	}
	err = cmd.Wait()
	if err != nil || !ready || !strings.Contains(out.String(), "ok goaway") {
		t.Fatalf("integ goaway: %v\n%s\ngateway a:\n%s", err, out.String(), a.log.String())
	}
}

// TestExampleDevice: the example device sends stdin's lines and prints
// their echoes.
func TestExampleDevice(t *testing.T) {
	t.Parallel()
	cProgs(t)
	g := startGateway(t)
	cmd := exec.Command(progs.device, "-n", "2", g.addr, "c-example-device")
	cmd.Stdin = strings.NewReader("first line\nsecond line\n")
	out := run(t, cmd)
	if !strings.Contains(out, "< first line\n< second line\n") {
		t.Fatalf("device output:\n%s", out)
	}
}

// scenario runs one scenario of the integration program.
func scenario(t *testing.T, name string, args ...string) {
	t.Helper()
	out := run(t, exec.Command(progs.integ, append([]string{name}, args...)...))
	if !strings.Contains(out, "ok "+name+"\n") {
		t.Fatalf("integ %s:\n%s", name, out)
	}
}

// run runs cmd within runTimeout and returns its output; a failure or
// non-zero exit fails the test with the output.
func run(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	c := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	c.Stdin = cmd.Stdin
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return string(out)
}

// proc is a child process whose output is collected; t.Cleanup kills it
// by its PID and logs the output if the test failed.
type proc struct {
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
}

// startProc starts path with args; what names it in the failure log.
func startProc(t *testing.T, what, path string, args ...string) *proc {
	t.Helper()
	p := &proc{log: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s:\n%s", what, p.log.String())
		}
	})
	return p
}

// exited: the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// gateway is one `switchyard gateway` process on a port it picked.
type gateway struct {
	*proc
	addr string
}

var listening = regexp.MustCompile(`msg="gateway listening".* devices=(\S+)`)

// startGateway starts a gateway on 127.0.0.1:0 without an admin listener
// and reads its device address from its log; t.Cleanup kills it.
func startGateway(t *testing.T, args ...string) *gateway {
	t.Helper()
	bin := testcluster.Binary(t)
	g := &gateway{proc: startProc(t, fmt.Sprintf("gateway %v", args), bin,
		append([]string{"gateway", "--listen", "127.0.0.1:0", "--admin", "-"}, args...)...)}
	poll.Until(t, poll.Patience, func() error {
		if m := listening.FindStringSubmatch(g.log.String()); m != nil {
			g.addr = m[1]
			return nil
		}
		if g.exited() {
			t.Fatalf("gateway %v exited:\n%s", args, g.log.String())
		}
		return fmt.Errorf("gateway %v not listening yet:\n%s", args, g.log.String())
	})
	return g
}

func (g *gateway) signal(t *testing.T, sig os.Signal) {
	if err := g.cmd.Process.Signal(sig); err != nil {
		t.Errorf("signal gateway: %v", err)
	}
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

var _ io.Writer = (*syncBuffer)(nil)

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
