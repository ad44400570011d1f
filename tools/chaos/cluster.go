package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// member is one gateway or shard of the run, across its restarts: it
// keeps its name and its ports, so that a restart looks like the same
// machine coming back (and loadgen's --addr list stays true).
type member struct {
	name    string // gw1…, s1…
	gateway bool
	addr    string // gateway: device address
	admin   string // gateway: admin HTTP address
	link    string // shard: link address
	gossip  string
	starts  int   // how many times it was started (its log files: <name>-<n>.log)
	p       *proc // the current process; nil before the first start
	retired bool  // drained for good: it is not restarted
}

// up reports whether its process runs.
func (m *member) up() bool { return m.p != nil && !m.p.exited() }

// cluster is every process of the run.
type cluster struct {
	cfg     *config
	dir     string
	keyFile string
	sp      *spawner
	ports   *ports

	mu       sync.Mutex // members: events add shards while the settle checks read
	gateways []*member
	shards   []*member
	loadgen  *proc
}

func newCluster(cfg *config, dir string) (*cluster, error) {
	cl := &cluster{cfg: cfg, dir: dir, keyFile: filepath.Join(dir, "cluster.key"), ports: newPorts()}
	if err := writeKey(cl.keyFile); err != nil {
		return nil, err
	}
	cl.sp = newSpawner(cfg.Nice)
	return cl, nil
}

// start starts the shards, then the gateways, and waits until each
// gateway is ready with every shard on its ring.
func (cl *cluster) start(ctx context.Context) error {
	for range cl.cfg.Shards {
		if _, err := cl.addShard(ctx); err != nil {
			return err
		}
	}
	for i := range cl.cfg.Gateways {
		m := &member{name: fmt.Sprintf("gw%d", i+1), gateway: true}
		var errs [3]error
		m.addr, errs[0] = cl.ports.addr()
		m.admin, errs[1] = cl.ports.addr()
		m.gossip, errs[2] = cl.ports.addr()
		if err := errors.Join(errs[:]...); err != nil {
			return err
		}
		cl.mu.Lock()
		cl.gateways = append(cl.gateways, m)
		cl.mu.Unlock()
		if err := cl.run(ctx, m); err != nil {
			return err
		}
	}
	return cl.converged(ctx)
}

// addShard starts one more shard, s<n+1>, on fresh ports.
func (cl *cluster) addShard(ctx context.Context) (*member, error) {
	cl.mu.Lock()
	m := &member{name: fmt.Sprintf("s%d", len(cl.shards)+1)}
	cl.mu.Unlock()
	var err1, err2 error
	m.link, err1 = cl.ports.addr()
	m.gossip, err2 = cl.ports.addr()
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	cl.mu.Lock()
	cl.shards = append(cl.shards, m)
	cl.mu.Unlock()
	return m, cl.run(ctx, m)
}

// run starts m's process (again) and waits until it is ready: a
// gateway's /readyz answers 200, a shard's gossip port accepts.
func (cl *cluster) run(ctx context.Context, m *member) error {
	m.starts++
	argv := cl.argv(m)
	p, err := cl.sp.spawn(cl.logPath(m), nil, argv...)
	if err != nil {
		return err
	}
	cl.mu.Lock()
	m.p = p
	cl.mu.Unlock()
	err = pollCtx(ctx, cl.cfg.Settle, func() error {
		if p.exited() {
			return fmt.Errorf("%s exited: %v", m.name, p.err)
		}
		if m.gateway {
			_, err := httpGet(ctx, "http://"+m.admin+"/readyz")
			return err
		}
		return dial(ctx, m.gossip)
	})
	if err != nil {
		return fmt.Errorf("%s not ready: %w (log %s, ending:\n%s)", m.name, err, cl.logPath(m), tailFile(cl.logPath(m), 10))
	}
	return nil
}

func (cl *cluster) logPath(m *member) string {
	return filepath.Join(cl.dir, logName(m, m.starts))
}

// argv is m's command line: joined through every other member's gossip
// address (any one up is enough).
func (cl *cluster) argv(m *member) []string {
	var seeds []string
	for _, o := range cl.members() {
		if o != m && o.p != nil {
			seeds = append(seeds, o.gossip)
		}
	}
	bin := filepath.Join(cl.cfg.Bin, "switchyard")
	if m.gateway {
		argv := []string{bin, "gateway", "--node", m.name, "--listen", m.addr, "--admin", m.admin,
			"--gossip", m.gossip, "--cluster-key-file", cl.keyFile}
		if len(seeds) > 0 {
			argv = append(argv, "--join", strings.Join(seeds, ","))
		}
		return append(argv, strings.Fields(cl.cfg.GatewayArgs)...)
	}
	argv := []string{bin, "backend", "--app", "counter", "--shard", m.name, "--link", m.link, "--admin", "-",
		"--gossip", m.gossip, "--cluster-key-file", cl.keyFile}
	if len(seeds) > 0 {
		argv = append(argv, "--join", strings.Join(seeds, ","))
	}
	return append(argv, strings.Fields(cl.cfg.ShardArgs)...)
}

// members is every gateway and shard, gateways first.
func (cl *cluster) members() []*member {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return append(slices.Clone(cl.gateways), cl.shards...)
}

// live returns the gateways or the shards whose process runs.
func (cl *cluster) live(gateways bool) []*member {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	src := cl.shards
	if gateways {
		src = cl.gateways
	}
	var out []*member
	for _, m := range src {
		if m.up() {
			out = append(out, m)
		}
	}
	return out
}

// converged waits (cfg.Settle) until every live gateway is ready, has
// exactly the live shards on its ring and moves no session.
func (cl *cluster) converged(ctx context.Context) error {
	return pollCtx(ctx, cl.cfg.Settle, func() error { return cl.divergence(ctx) })
}

// divergence says why the cluster has not converged ("" nil when it has).
func (cl *cluster) divergence(ctx context.Context) error {
	var want []string
	for _, s := range cl.live(false) {
		want = append(want, s.name)
	}
	slices.Sort(want)
	for _, g := range cl.live(true) {
		if _, err := httpGet(ctx, "http://"+g.admin+"/readyz"); err != nil {
			return fmt.Errorf("%s: %v", g.name, err)
		}
		b, err := httpGet(ctx, "http://"+g.admin+"/api/v1/cluster/ring")
		if err != nil {
			return fmt.Errorf("%s: %v", g.name, err)
		}
		var ring struct {
			Shards []string `json:"shards"`
		}
		if err := json.Unmarshal(b, &ring); err != nil {
			return fmt.Errorf("%s: ring: %v", g.name, err)
		}
		slices.Sort(ring.Shards)
		if !slices.Equal(ring.Shards, want) {
			return fmt.Errorf("%s has ring %v, want %v", g.name, ring.Shards, want)
		}
		page, err := httpGet(ctx, "http://"+g.admin+"/metrics")
		if err != nil {
			return fmt.Errorf("%s: %v", g.name, err)
		}
		if n, _ := metric(page, "switchyard_sessions_moving"); n != 0 {
			return fmt.Errorf("%s moves %.0f sessions", g.name, n)
		}
	}
	return nil
}

// stop ends every process still running, by pid: SIGTERM, SIGKILL after
// grace; loadgen first. It waits for each, then ends the spawner.
func (cl *cluster) stop(grace time.Duration) {
	if cl.loadgen != nil {
		cl.loadgen.stop(grace)
	}
	var wg sync.WaitGroup
	for _, m := range cl.members() {
		if m.p != nil {
			wg.Add(1)
			go func() { defer wg.Done(); m.p.stop(grace) }()
		}
	}
	wg.Wait()
	cl.sp.close()
}

// pollCtx calls cond every 200 ms until it returns nil, within passed
// (its last error) or ctx ended.
func pollCtx(ctx context.Context, within time.Duration, cond func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", within, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// tailFile is the last n lines of a file, for an error message.
func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
