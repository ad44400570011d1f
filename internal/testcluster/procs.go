package testcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/router"
)

// Procs is a cluster of switchyard processes on loopback: `switchyard
// backend` shards and `switchyard gateway --gossip` gateways sharing one
// cluster key file. Every process is killed by its PID in t.Cleanup.
type Procs struct {
	t       testing.TB
	opts    Options
	bin     string
	dir     string
	keyFile string

	mu       sync.Mutex
	gateways []*Proc
	shards   []*Proc
	probes   int
}

// procStart is how many times a process is started on fresh ports when
// the ones picked were taken meanwhile.
const procStart = 3

// NewProcs builds the binary (once per test binary), starts opts.Shards
// shard processes, then opts.Gateways gateway processes, all joining
// through the first shard's gossip address (the first gateway's without
// shards), and waits until each process is up: a shard's gossip port
// accepts, a gateway's /readyz answers 200 and a device handshake through
// it succeeds (without shards, whose absence keeps /readyz at 503: its
// /healthz answers). It does not wait for convergence.
// opts.Handler, GatewayConfig, ShardConfig and Logger do not apply.
func NewProcs(t testing.TB, opts Options) *Procs {
	t.Helper()
	if opts.Handler != nil {
		t.Fatal("testcluster: NewProcs runs the binary's apps; Options.Handler does not apply")
	}
	if _, err := opts.handler(); err != nil {
		t.Fatal(err)
	}
	p := &Procs{t: t, opts: opts, bin: Binary(t), dir: t.TempDir()}
	p.keyFile = filepath.Join(p.dir, "cluster.key")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if err := os.WriteFile(p.keyFile, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
	for i := range opts.Shards {
		p.StartShard(opts.shardName(i))
	}
	for range opts.Gateways {
		p.StartGateway()
	}
	return p
}

// Proc is one switchyard process.
type Proc struct {
	Role    string // "backend" or "gateway"
	Name    string // shard name, or gw<i>
	Addr    string // gateway: device address; backend: link address
	Admin   string // admin HTTP address (a shard's: /metrics, /healthz, /readyz)
	Gossip  string // gossip address
	logPath string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process exited and was waited for
	mu   sync.Mutex
	gone bool  // stopped or killed on purpose
	err  error // exit status, once done
}

// PID is the process id.
func (pr *Proc) PID() int { return pr.cmd.Process.Pid }

// Kill sends SIGKILL to the process and waits for it.
func (pr *Proc) Kill() {
	pr.markGone()
	_ = pr.cmd.Process.Signal(syscall.SIGKILL)
	<-pr.done
}

// Stop sends SIGTERM (the process drains, then exits) and waits for it
// until ctx ends, then kills it. It returns the exit error, if any.
func (pr *Proc) Stop(ctx context.Context) error {
	pr.markGone()
	_ = pr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pr.done:
	case <-ctx.Done():
		_ = pr.cmd.Process.Signal(syscall.SIGKILL)
		<-pr.done
		return fmt.Errorf("testcluster: %s did not stop in time: %w", pr.Name, ctx.Err())
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.err
}

// Exited reports whether the process has exited.
func (pr *Proc) Exited() bool {
	select {
	case <-pr.done:
		return true
	default:
		return false
	}
}

// Log returns what the process wrote to stdout and stderr so far.
func (pr *Proc) Log() string {
	b, _ := os.ReadFile(pr.logPath)
	return string(b)
}

func (pr *Proc) markGone() {
	pr.mu.Lock()
	pr.gone = true
	pr.mu.Unlock()
}

func (pr *Proc) isGone() bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.gone
}

// start runs the binary with args, output to the log file, and a
// goroutine that waits for the exit.
func (p *Procs) start(pr *Proc, args []string) error {
	f, err := os.Create(pr.logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	pr.cmd, pr.done = cmd, make(chan struct{})
	go func() {
		err := cmd.Wait()
		f.Close()
		pr.mu.Lock()
		pr.err = err
		pr.mu.Unlock()
		close(pr.done)
	}()
	return nil
}

// launch starts a process built by mk on fresh ports and waits for ready,
// again on new ports when the ones picked were taken meanwhile.
func (p *Procs) launch(mk func(attempt int) (*Proc, []string, error), ready func(context.Context, *Proc) error) *Proc {
	p.t.Helper()
	var last error
	for attempt := range procStart {
		pr, args, err := mk(attempt)
		if err != nil {
			p.t.Fatalf("testcluster: %v", err)
		}
		if err := p.start(pr, args); err != nil {
			p.t.Fatalf("testcluster: start %s: %v", pr.Name, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), DefaultConvergeWait)
		err = p.waitReady(ctx, pr, ready)
		cancel()
		if err == nil {
			return pr
		}
		pr.Kill()
		last = fmt.Errorf("%s: %w\n%s", pr.Name, err, tail(pr.Log(), 30))
		if !strings.Contains(pr.Log(), "address already in use") {
			break
		}
	}
	p.t.Fatalf("testcluster: %v", last)
	return nil
}

// waitReady polls ready until it succeeds, the process exits or ctx ends.
func (p *Procs) waitReady(ctx context.Context, pr *Proc, ready func(context.Context, *Proc) error) error {
	t := time.NewTicker(4 * pollInterval)
	defer t.Stop()
	for {
		err := ready(ctx, pr)
		if err == nil {
			return nil
		}
		select {
		case <-pr.done:
			return fmt.Errorf("exited: %v", pr.err)
		case <-ctx.Done():
			return fmt.Errorf("not ready: %v", err)
		case <-t.C:
		}
	}
}

// seed is the gossip address of the first process still up: shards in
// start order, then gateways.
func (p *Procs) seed() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range append(append([]*Proc(nil), p.shards...), p.gateways...) {
		if !pr.isGone() && !pr.Exited() {
			return pr.Gossip
		}
	}
	return ""
}

// StartShard starts a `switchyard backend` process for shard name on
// fresh ports, with Options.ShardFlags and then flags (e.g. --labels
// version=2.1 for this shard only), and returns it once its gossip port
// accepts.
func (p *Procs) StartShard(name string, flags ...string) *Proc {
	p.t.Helper()
	seed := p.seed()
	pr := p.launch(func(attempt int) (*Proc, []string, error) {
		link, err := freeAddr(false)
		if err != nil {
			return nil, nil, err
		}
		gossip, err := freeAddr(true)
		if err != nil {
			return nil, nil, err
		}
		admin, err := freeAddr(false)
		if err != nil {
			return nil, nil, err
		}
		pr := &Proc{Role: "backend", Name: name, Addr: link, Admin: admin, Gossip: gossip,
			logPath: filepath.Join(p.dir, fmt.Sprintf("backend-%s-%d.log", name, attempt))}
		args := []string{"backend", "--app", p.app(), "--shard", name, "--link", link, "--admin", admin, "--gossip", gossip,
			"--cluster-key-file", p.keyFile, "--drain-timeout", "2s"}
		if seed != "" {
			args = append(args, "--join", seed)
		}
		return pr, append(append(args, p.opts.ShardFlags...), flags...), nil
	}, func(ctx context.Context, pr *Proc) error { return dialOnce(ctx, pr.Gossip) })
	p.mu.Lock()
	p.shards = append(p.shards, pr)
	p.mu.Unlock()
	return pr
}

// StartGateway starts a `switchyard gateway --gossip` process on fresh
// ports and returns its index once it is ready.
func (p *Procs) StartGateway() int {
	p.t.Helper()
	seed := p.seed()
	p.mu.Lock()
	i := len(p.gateways)
	p.mu.Unlock()
	withShards := len(p.Active()) > 0
	pr := p.launch(func(attempt int) (*Proc, []string, error) {
		var addrs [3]string
		for j := range addrs {
			var err error
			if addrs[j], err = freeAddr(j == 2); err != nil {
				return nil, nil, err
			}
		}
		name := fmt.Sprintf("gw%d", i)
		pr := &Proc{Role: "gateway", Name: name, Addr: addrs[0], Admin: addrs[1], Gossip: addrs[2],
			logPath: filepath.Join(p.dir, fmt.Sprintf("gateway-%d-%d.log", i, attempt))}
		args := []string{"gateway", "--node", name, "--listen", pr.Addr, "--admin", pr.Admin, "--gossip", pr.Gossip,
			"--cluster-key-file", p.keyFile}
		if !p.opts.OwnDrainSettings {
			args = append(args, "--drain-timeout", "2s", "--goaway-retry", "200ms")
		}
		if seed != "" {
			args = append(args, "--join", seed)
		}
		return pr, append(args, p.opts.GatewayFlags...), nil
	}, func(ctx context.Context, pr *Proc) error {
		if !withShards { // /readyz stays 503 until a shard is in the ring
			return adminGet(ctx, pr.Admin, "/healthz")
		}
		if err := readyz(ctx, pr.Admin); err != nil {
			return err
		}
		return p.probe(ctx, pr.Addr)
	})
	p.mu.Lock()
	p.gateways = append(p.gateways, pr)
	p.mu.Unlock()
	return i
}

func (p *Procs) app() string {
	if p.opts.App == "" {
		return DefaultApp
	}
	return p.opts.App
}

// dialOnce checks that addr accepts a TCP connection.
func dialOnce(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// readyz checks that the admin listener's /readyz answers 200.
func readyz(ctx context.Context, admin string) error { return adminGet(ctx, admin, "/readyz") }

// adminGet checks that the admin listener answers path with 200.
func adminGet(ctx context.Context, admin, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return nil
}

// probe makes one device handshake through addr (a shard must be in the
// gateway's ring) and closes it.
func (p *Procs) probe(ctx context.Context, addr string) error {
	p.mu.Lock()
	p.probes++
	id := fmt.Sprintf("testcluster-probe-%d", p.probes)
	p.mu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := client.Dial(dctx, client.Config{Addr: addr, ID: id, DisableReconnect: true})
	if err != nil {
		return err
	}
	return c.Close()
}

// Gateway returns gateway process i.
func (p *Procs) Gateway(i int) *Proc {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gateways[i]
}

// Shard returns shard process i in start order.
func (p *Procs) Shard(i int) *Proc {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.shards[i]
}

// Addrs returns the device addresses of the gateways still up.
func (p *Procs) Addrs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, pr := range p.gateways {
		if !pr.isGone() && !pr.Exited() {
			out = append(out, pr.Addr)
		}
	}
	return out
}

// Active returns the names of the shards still up, sorted.
func (p *Procs) Active() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, pr := range p.shards {
		if !pr.isGone() && !pr.Exited() {
			out = append(out, pr.Name)
		}
	}
	sort.Strings(out)
	return out
}

// Ring is the ring of the shards still up.
func (p *Procs) Ring() *router.Ring {
	p.t.Helper()
	return Ring(p.t, p.Active()...)
}

// Kill sends SIGKILL to shard process i and waits for it.
func (p *Procs) Kill(i int) { p.Shard(i).Kill() }

// Stop sends SIGTERM to shard process i (it drains and leaves) and waits
// for it, at most DefaultStopTimeout plus its drain timeout.
func (p *Procs) Stop(i int) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), DefaultStopTimeout+2*time.Second)
	defer cancel()
	if err := p.Shard(i).Stop(ctx); err != nil {
		p.t.Errorf("testcluster: stop shard %s: %v", p.Shard(i).Name, err)
	}
}

// ringChanged matches the gateway's log line for a new ring.
var ringChanged = regexp.MustCompile(`msg="ring changed".* shards=(\d+)`)

// WaitConverged polls until every gateway still up last logged a ring of
// as many shards as are up and, with shards, takes a device handshake; or
// ctx ends. (A process shows its ring only in its log.)
func (p *Procs) WaitConverged(ctx context.Context) error {
	t := time.NewTicker(4 * pollInterval)
	defer t.Stop()
	for {
		why := p.divergence(ctx)
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testcluster: not converged: %s: %w", why, ctx.Err())
		case <-t.C:
		}
	}
}

func (p *Procs) divergence(ctx context.Context) string {
	want := len(p.Active())
	p.mu.Lock()
	gws := append([]*Proc(nil), p.gateways...)
	p.mu.Unlock()
	for _, g := range gws {
		if g.isGone() || g.Exited() {
			continue
		}
		n := 0
		if m := ringChanged.FindAllStringSubmatch(g.Log(), -1); len(m) > 0 {
			n, _ = strconv.Atoi(m[len(m)-1][1])
		}
		if n != want {
			return fmt.Sprintf("%s has %d shards, want %d", g.Name, n, want)
		}
		if want > 0 {
			if err := p.probe(ctx, g.Addr); err != nil {
				return fmt.Sprintf("%s: handshake: %v", g.Name, err)
			}
		}
	}
	return ""
}

// close kills every process still running and waits for it; on failure
// it logs the end of every process's log.
func (p *Procs) close() {
	p.mu.Lock()
	all := append(append([]*Proc(nil), p.gateways...), p.shards...)
	p.mu.Unlock()
	for _, pr := range all {
		_ = pr.cmd.Process.Signal(syscall.SIGKILL)
	}
	for _, pr := range all {
		<-pr.done
		if p.t.Failed() {
			p.t.Logf("testcluster: %s %s (pid %d) log:\n%s", pr.Role, pr.Name, pr.PID(), tail(pr.Log(), 40))
		}
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Signal sends sig to the process (SIGHUP: reload its configuration).
func (pr *Proc) Signal(sig os.Signal) error { return pr.cmd.Process.Signal(sig) }

// KeyFile is the path of the cluster key file every process was started
// with; rewriting it and sending SIGHUP rotates the keys.
func (p *Procs) KeyFile() string { return p.keyFile }
