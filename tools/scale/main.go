// Command scale holds many authenticated device sessions on a cluster of
// gateway processes on this one host, heartbeating for a fixed time, and
// reports what they cost: memory per session (user space and kernel), CPU,
// connect rate, and every disconnect that was not asked for.
//
//	go run ./tools/scale --sessions 100000 --hold 5m   # what `make scale` runs
//
// It builds cmd/switchyard and tools/loadgen, starts --backends echo shards
// and enough gateways (--per-gateway sessions each: this box allows 20,000
// open files per process) joined by gossip with an encrypted cluster key and
// auth on, waits until every gateway has every shard on its ring, then runs
// `loadgen --idle` (heartbeats only) over all the gateways. Every few
// seconds it samples the gateways' /metrics and the /proc files of every
// process it started. At the end it stops them all (SIGTERM, then SIGKILL),
// by pid, and writes one JSON summary.
//
// The run passes when every session came up and none was lost: loadgen saw
// no disconnect, reconnect or ERROR, and the gateways counted no disconnect
// of any reason while the sessions were held. Anything else exits 1.
//
// Losing a gateway (issue 7, point 4):
//
//	go run ./tools/scale --sessions 10000 --gateways 3 --per-gateway 5500 --backends 4 --app counter \
//	    --rate 5 --ramp 500 --drain-gateway-after 20s --hold 100s --loadgen-args=--drain=15s
//
// (--per-gateway sets each gateway's --max-conns to it + 500: the gateways
// left must have room for every session.)
// --drain-gateway-after D sends SIGTERM to the last gateway D after every
// session is up (it drains: GOAWAY spread over its drain window, its
// devices resume on the others); --kill-gateway-after D sends SIGKILL to
// the last gateway still running, or to the last --kill-gateways N of
// them at once. The other gateways' metrics (every
// 100 ms) and loadgen's per-second rows tell when every session was back
// and how many came back each second; see gateways.go. Such a run fails
// on any --verify violation, a resume answered as a new session, sessions
// not back within 40 s, or (a drain) a second with more than
// --reconnect-peak-target (2) times the mean reconnects of the period.
// Its devices' disconnects and reconnects are expected then; other
// errors (ERROR frames, timeouts) still fail it.
//
// Everything is bounded: the run gives up --deadline after it started
// (default: the ramp three times over, plus the hold, plus five minutes).
//
// Session moves (issue 7):
//
//	go run ./tools/scale --sessions 10000 --per-gateway 3400 --backends 4 --app counter \
//	    --rate 5 --ramp 500 --drain-shard-after 20s --add-shard-after 50s --hold 80s
//
// --app counter runs the stateful example app on the shards, --rate F has
// every session send F reliable frames/s checked end to end (`loadgen
// --rate F --verify`: lost, duplicated, reordered, state reset) instead of
// heartbeats only. --drain-shard-after D sends SIGTERM to the last shard D
// after every session is up (it drains: the gateways move its sessions
// away); --add-shard-after D starts one more shard then (the gateways
// move the sessions it now owns). Each event is followed in the gateways'
// move metrics (every 100 ms: first move started, every move ended, the
// rings at their new size; results, per-move durations) and in loadgen's
// per-second progress lines (latency before and during, replies naming a
// new shard); see moves.go. Such a run also fails on any --verify
// violation, any move that did not end "ok", a drained shard that did not
// exit, or moves that took longer than --move-target (2 s).
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/switchyard-gw/switchyard/internal/procstat"
)

type config struct {
	Sessions   int           `json:"sessions"`
	Gateways   int           `json:"gateways"`
	PerGateway int           `json:"per_gateway"`
	Backends   int           `json:"backends"`
	Hold       time.Duration `json:"hold"`
	Ramp       float64       `json:"ramp"`
	Heartbeat  int           `json:"heartbeat_s"`
	Sample     time.Duration `json:"sample"`
	Deadline   time.Duration `json:"deadline"`
	Bin        string        `json:"-"`
	Out        string        `json:"-"`
	LoadgenArg string        `json:"loadgen_args,omitempty"`
	GatewayArg string        `json:"gateway_args,omitempty"`
	BackendArg string        `json:"backend_args,omitempty"`
	GoMaxProcs int           `json:"gomaxprocs"`
	MinFree    int64         `json:"min_free"`
	// Reliable traffic and moves (issue 7); see moves.go.
	App        string        `json:"app"`
	Rate       float64       `json:"rate,omitempty"`
	DrainAfter time.Duration `json:"drain_shard_after,omitempty"`
	KillAfter  time.Duration `json:"kill_shard_after,omitempty"`
	AddAfter   time.Duration `json:"add_shard_after,omitempty"`
	MoveTarget time.Duration `json:"move_target,omitempty"`
	// Losing a gateway (issue 7, point 4); see gateways.go.
	GwDrainAfter time.Duration `json:"drain_gateway_after,omitempty"`
	GwKillAfter  time.Duration `json:"kill_gateway_after,omitempty"`
	KillGateways int           `json:"kill_gateways,omitempty"`
	StormAfter   time.Duration `json:"storm_after,omitempty"`
	PeakTarget   float64       `json:"reconnect_peak_target,omitempty"`
}

func main() {
	var c config
	fs := flag.NewFlagSet("scale", flag.ExitOnError)
	fs.IntVar(&c.Sessions, "sessions", 100000, "authenticated sessions to hold")
	fs.IntVar(&c.Gateways, "gateways", 0, "gateway processes (0: sessions / --per-gateway, rounded up)")
	fs.IntVar(&c.PerGateway, "per-gateway", 15000, "most sessions per gateway process (≤ 19,000 here: 20,000 files per process)")
	fs.IntVar(&c.Backends, "backends", 3, "echo backend shards behind the gateways")
	fs.DurationVar(&c.Hold, "hold", 5*time.Minute, "how long the sessions are held after the last one started")
	fs.Float64Var(&c.Ramp, "ramp", 10000, "sessions started per second (loadgen --ramp)")
	fs.IntVar(&c.Heartbeat, "heartbeat", 10, "gateway heartbeat in seconds: devices PING that often, idle close after 3×")
	fs.DurationVar(&c.Sample, "sample", 5*time.Second, "how often the gateways and processes are sampled")
	fs.DurationVar(&c.Deadline, "deadline", 0, "give up after this long (0: 3× the ramp + hold + 5 min)")
	fs.StringVar(&c.Bin, "bin", "", "directory with switchyard and loadgen binaries (default: build them into a temp dir)")
	fs.StringVar(&c.Out, "out", "", "append the JSON summary to this file as one line (it always goes to stdout)")
	fs.StringVar(&c.LoadgenArg, "loadgen-args", "", "extra loadgen flags, space separated")
	fs.StringVar(&c.GatewayArg, "gateway-args", "", "extra gateway flags, space separated (e.g. --handshake-timeout 30s)")
	fs.StringVar(&c.BackendArg, "backend-args", "", "extra shard flags, space separated (e.g. --ping-interval 1s)")
	fs.IntVar(&c.GoMaxProcs, "gomaxprocs", 0, "GOMAXPROCS of every gateway (0: 1 when there are more processes than 2 per core, else the Go default)")
	fs.Int64Var(&c.MinFree, "min-free", 1<<30, "stop the load (and fail) when the box's MemAvailable falls below this many bytes")
	fs.StringVar(&c.App, "app", "echo", "example app of the backend shards: echo or counter (the one whose state moves)")
	fs.Float64Var(&c.Rate, "rate", 0, "reliable DATA frames/s per session, checked end to end (loadgen --rate F --verify) instead of heartbeats only (0: loadgen --idle)")
	fs.DurationVar(&c.KillAfter, "kill-shard-after", 0, "this long after every session is up, SIGKILL the last shard (a crash: its sessions reopen on the others from their checkpoints) and measure the recoveries like moves (0: no kill)")
	fs.DurationVar(&c.DrainAfter, "drain-shard-after", 0, "this long after every session is up, SIGTERM the last shard (it drains: its sessions move) and measure the moves (0: no drain)")
	fs.DurationVar(&c.AddAfter, "add-shard-after", 0, "this long after every session is up, start one more shard (a join: the sessions it now owns move) and measure the moves (0: no join)")
	fs.DurationVar(&c.MoveTarget, "move-target", 2*time.Second, "with --drain-shard-after, --kill-shard-after or --add-shard-after, the run fails unless each event's moves all ended within this long of it")
	fs.DurationVar(&c.GwDrainAfter, "drain-gateway-after", 0, "this long after every session is up, SIGTERM the last gateway (it drains: GOAWAY to its devices, which resume on the others) and measure until they are all back (0: no gateway drain)")
	fs.DurationVar(&c.StormAfter, "storm-after", 0, "this long after every session is up, every device's connection is cut at once (loadgen SIGUSR1) and reconnects with the client's backoff: a reconnect storm, measured until every session resumed; the run fails on any handshake timeout (408) or connection attempt given up (0: no storm)")
	fs.DurationVar(&c.GwKillAfter, "kill-gateway-after", 0, "this long after every session is up, SIGKILL the last gateway still running (its devices reconnect to the others and resume) and measure until they are all back (0: no gateway kill)")
	fs.IntVar(&c.KillGateways, "kill-gateways", 1, "with --kill-gateway-after, how many gateways are killed at once (the last ones still running): one gateway's death on a host that allows it more devices than this box's 20,000 files")
	fs.Float64Var(&c.PeakTarget, "reconnect-peak-target", 2, "with --drain-gateway-after, the run fails when the most devices back in one second exceed this many times their mean over the reconnect period")
	fs.Parse(os.Args[1:])
	if err := c.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(2)
	}
	if c.Gateways == 0 {
		c.Gateways = (c.Sessions + c.PerGateway - 1) / c.PerGateway
	}
	if c.GoMaxProcs == 0 && c.Gateways+c.Backends > 2*runtime.NumCPU() {
		// Dozens of processes with a P per core each only add threads
		// fighting for the same two cores.
		c.GoMaxProcs = 1
	}
	if c.Deadline == 0 {
		c.Deadline = time.Duration(3*float64(c.Sessions)/c.Ramp*float64(time.Second)) + c.Hold + 5*time.Minute
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, c.Deadline)
	sum, err := run(ctx, &c)
	cancel()
	stop()
	if sum != nil {
		b, _ := json.Marshal(sum)
		fmt.Println(string(b))
		if c.Out != "" {
			if f, err := os.OpenFile(c.Out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
				f.Write(append(b, '\n'))
				f.Close()
			}
		}
		fmt.Fprint(os.Stderr, sum.text())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

// proc is a process this run started.
type proc struct {
	name  string
	cmd   *exec.Cmd
	admin string        // gateways: admin address
	addr  string        // gateways: device address
	done  chan struct{} // closed when the process has exited (err is its Wait)
	err   error
	ended time.Time
}

// exited reports whether p has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// cluster is everything started, so that it can all be stopped.
type cluster struct {
	dir        string
	gomaxprocs int // for gateways and shards; 0: Go's default
	keyFile    string
	seeds      []string // gossip addresses of the first shards
	gateways   []*proc
	loadgen    *proc

	mu       sync.Mutex // backends: a join adds one while the run samples
	backends []*proc
}

func (cl *cluster) shards() []*proc {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return append([]*proc{}, cl.backends...)
}

func (cl *cluster) all() []*proc {
	ps := append(append([]*proc{}, cl.gateways...), cl.shards()...)
	if cl.loadgen != nil {
		ps = append(ps, cl.loadgen)
	}
	return ps
}

// stop ends every process by its pid: SIGTERM, SIGKILL after 10 s.
func (cl *cluster) stop() {
	for _, p := range cl.all() {
		if !p.exited() {
			p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range cl.all() {
		select {
		case <-p.done:
		case <-time.After(time.Until(deadline)):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
}

func run(ctx context.Context, c *config) (*summary, error) {
	dir, err := os.MkdirTemp("", "switchyard-scale-")
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "scale: %d sessions on %d gateways and %d shards; logs in %s\n", c.Sessions, c.Gateways, c.Backends, dir)
	if c.Bin == "" {
		c.Bin = dir
		for pkg, name := range map[string]string{"./cmd/switchyard": "switchyard", "./tools/loadgen": "loadgen"} {
			if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("build %s: %v\n%s", pkg, err, out)
			}
		}
	}
	cl := &cluster{dir: dir, gomaxprocs: c.GoMaxProcs}
	defer cl.stop()
	if err := cl.start(c); err != nil {
		return nil, err
	}
	if err := cl.waitRing(ctx, c.Backends, time.Minute); err != nil {
		return nil, err
	}
	base := cl.sample()
	s := &summary{Config: *c, Date: time.Now().UTC().Format(time.RFC3339), Host: procstat.ThisHost(), Before: base}
	if err := cl.startLoadgen(c); err != nil {
		return s, err
	}
	start := time.Now()
	ev := cl.startEvents(ctx, c, start)
	defer ev.wait() // before cl.stop: the events use the processes
	prev := base
	// Every second while sessions come up (the connect rate is read off
	// these samples), every --sample once they are all up.
	// Scraping 55 gateways every second is load of its own: during the
	// ramp the interval grows with the gateway count.
	rampEvery := time.Duration(max(1, c.Gateways/10)) * time.Second
	tick := time.NewTimer(rampEvery)
	defer tick.Stop()
	var lgErr error
loop:
	for {
		select {
		case <-cl.loadgen.done:
			lgErr = cl.loadgen.err
			break loop
		case <-ctx.Done():
			s.StoppedBy = fmt.Sprintf("gave up after %v (deadline)", c.Deadline)
			if errors.Is(ctx.Err(), context.Canceled) {
				s.StoppedBy = "interrupted"
			}
			s.Events, s.GatewayEvents = ev.wait()
			s.finish(c, cl)
			return s, errors.New(s.StoppedBy)
		case <-tick.C:
			if s.UpAfter == 0 {
				tick.Reset(rampEvery)
			} else {
				tick.Reset(c.Sample)
			}
			sm := cl.sample()
			sm.T = time.Since(start).Seconds()
			s.Samples = append(s.Samples, sm)
			if s.UpAfter == 0 && sm.Sessions >= float64(c.Sessions) {
				s.UpAfter = sm.T
				ev.allUp(time.Now())
			}
			// Pushing toward a million, the box runs out before the
			// target does: stop the load while the kernel still has room,
			// so that the run ends with a figure instead of the OOM killer.
			if sm.MemAvail > 0 && sm.MemAvail < float64(c.MinFree) && s.StoppedBy == "" {
				s.StoppedBy = fmt.Sprintf("memory: %.0f MiB available at %.0f sessions", sm.MemAvail/(1<<20), sm.Sessions)
				s.MaxSessions = sm.Sessions
				fmt.Fprintln(os.Stderr, "scale: stopping the load:", s.StoppedBy)
				cl.loadgen.cmd.Process.Signal(syscall.SIGTERM)
			}
			s.MaxSessions = max(s.MaxSessions, sm.Sessions)
			fmt.Fprintf(os.Stderr, "scale: t=%4.0fs sessions %7.0f  gateways %6.0f MiB  kernel slab %6.0f MiB  tcp mem %5.0f MiB  cores: gateways %.2f shards %.2f loadgen %.2f  handshake %s  disconnects %.0f\n",
				sm.T, sm.Sessions, sm.GatewayRSS/(1<<20), sm.Slab/(1<<20), sm.TCPMem/(1<<20),
				cores(prev.GatewayCPU, sm.GatewayCPU, sm.T-prev.T), cores(prev.BackendCPU, sm.BackendCPU, sm.T-prev.T),
				cores(prev.LoadgenCPU, sm.LoadgenCPU, sm.T-prev.T), meanHandshake(prev, sm), sm.Disconnects)
			prev = sm
		}
	}
	s.Events, s.GatewayEvents = ev.wait()
	s.finish(c, cl)
	if lgErr != nil && s.Loadgen == nil {
		return s, fmt.Errorf("loadgen: %v (log: %s)", lgErr, filepath.Join(dir, "loadgen.log"))
	}
	return s, s.verdict(c)
}

// nextPort is where freePort looks next. Ports are taken below the
// kernel's ephemeral range (32768–60999 by default): a port 0 listener
// picks one from that range, and with 55 gateways dialling links and
// gossip, another process's outgoing connection took a port between the
// moment it was picked and the moment the gateway bound it.
var nextPort = 20000

// freePort returns a port free for TCP and UDP on 127.0.0.1 (memberlist
// binds both).
func freePort() (int, error) {
	for ; nextPort < 32768; nextPort++ {
		addr := fmt.Sprintf("127.0.0.1:%d", nextPort)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		nextPort++
		return nextPort - 1, nil
	}
	return 0, errors.New("no free port in 20000–32767")
}

// spawn starts a process with GOMAXPROCS gmp (0: Go's default).
func (cl *cluster) spawn(name string, gmp int, args ...string) (*proc, error) {
	log, err := os.Create(filepath.Join(cl.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	if gmp > 0 {
		cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(gmp))
	}
	// Whatever ends this run, nothing it started outlives it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	log.Close() // the child has its own copy
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		p.ended = time.Now()
		close(p.done)
	}()
	return p, nil
}

func (cl *cluster) start(c *config) error {
	keyFile, secretFile := filepath.Join(cl.dir, "cluster.key"), filepath.Join(cl.dir, "auth.secret")
	for _, f := range []string{keyFile, secretFile} {
		b := make([]byte, 32)
		rand.Read(b)
		if err := os.WriteFile(f, []byte(base64.StdEncoding.EncodeToString(b)+"\n"), 0o600); err != nil {
			return err
		}
	}
	cl.keyFile = keyFile
	bin := filepath.Join(c.Bin, "switchyard")
	for range c.Backends {
		if _, err := cl.startBackend(c); err != nil {
			return err
		}
	}
	seeds := cl.seeds
	for i := range c.Gateways {
		dev, err1 := freePort()
		admin, err2 := freePort()
		gossip, err3 := freePort()
		if err := errors.Join(err1, err2, err3); err != nil {
			return err
		}
		args := []string{bin, "gateway",
			"--listen", fmt.Sprintf("127.0.0.1:%d", dev), "--admin", fmt.Sprintf("127.0.0.1:%d", admin),
			"--gossip", fmt.Sprintf("127.0.0.1:%d", gossip), "--join", strings.Join(seeds, ","),
			"--cluster-key-file", keyFile, "--auth-secret-file", secretFile,
			"--heartbeat", strconv.Itoa(c.Heartbeat) + "s", "--max-conns", strconv.Itoa(c.PerGateway + 500),
			"--node", fmt.Sprintf("gw%d", i+1)}
		p, err := cl.spawn(fmt.Sprintf("gateway-%d", i+1), cl.gomaxprocs, append(args, strings.Fields(c.GatewayArg)...)...)
		if err != nil {
			return err
		}
		p.addr, p.admin = fmt.Sprintf("127.0.0.1:%d", dev), fmt.Sprintf("127.0.0.1:%d", admin)
		cl.gateways = append(cl.gateways, p)
	}
	return nil
}

// startBackend starts shard s<n+1> (n: the shards started so far), joined
// to the first one's gossip.
func (cl *cluster) startBackend(c *config) (*proc, error) {
	link, err1 := freePort()
	gossip, err2 := freePort()
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	cl.mu.Lock()
	n := len(cl.backends)
	cl.mu.Unlock()
	g := fmt.Sprintf("127.0.0.1:%d", gossip)
	args := []string{filepath.Join(c.Bin, "switchyard"), "backend", "--app", c.App, "--shard", fmt.Sprintf("s%d", n+1),
		"--link", fmt.Sprintf("127.0.0.1:%d", link), "--admin", "-", "--gossip", g, "--cluster-key-file", cl.keyFile}
	if len(cl.seeds) > 0 {
		args = append(args, "--join", cl.seeds[0])
	}
	args = append(args, strings.Fields(c.BackendArg)...)
	// The few shards do the work of every gateway's sessions: they keep
	// Go's default GOMAXPROCS; only the many gateways get --gomaxprocs.
	p, err := cl.spawn(fmt.Sprintf("backend-%d", n+1), 0, args...)
	if err != nil {
		return nil, err
	}
	cl.mu.Lock()
	cl.backends = append(cl.backends, p)
	cl.mu.Unlock()
	if n < c.Backends {
		cl.seeds = append(cl.seeds, g)
	}
	return p, nil
}

// waitRing waits until every gateway has all the shards on its ring.
func (cl *cluster) waitRing(ctx context.Context, shards int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, g := range cl.gateways {
		for {
			var ring struct {
				Shards []string `json:"shards"`
			}
			if err := getJSON("http://"+g.admin+"/api/v1/cluster/ring", &ring); err == nil && len(ring.Shards) == shards {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%s has not seen %d shards after %v (log: %s)", g.name, shards, limit, filepath.Join(cl.dir, g.name+".log"))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

func (cl *cluster) startLoadgen(c *config) error {
	var addrs []string
	for _, g := range cl.gateways {
		addrs = append(addrs, g.addr)
	}
	args := []string{filepath.Join(c.Bin, "loadgen"), "--addr", strings.Join(addrs, ","),
		"--sessions", strconv.Itoa(c.Sessions), "--ramp", strconv.FormatFloat(c.Ramp, 'f', -1, 64),
		"--duration", c.Hold.String(), "--secret-file", filepath.Join(cl.dir, "auth.secret"),
		"--id-prefix", "scale-", "--json", filepath.Join(cl.dir, "loadgen.json")}
	if c.Rate > 0 {
		// Progress lines (one a second, read back for the latency around
		// each move) instead of --quiet.
		args = append(args, "--rate", strconv.FormatFloat(c.Rate, 'f', -1, 64), "--verify")
	} else {
		args = append(args, "--idle", "--quiet")
	}
	args = append(args, strings.Fields(c.LoadgenArg)...)
	// loadgen's own processes get Go's default GOMAXPROCS: it sizes its
	// epoll workers from it (--workers in --loadgen-args overrides).
	p, err := cl.spawn("loadgen", 0, args...)
	cl.loadgen = p
	return err
}

// sample is one reading of the whole run.
type sample struct {
	T           float64 `json:"t_s"`
	Sessions    float64 `json:"sessions"`    // sum of the gateways' switchyard_sessions (a session outlives its connection for the resume window)
	Connections float64 `json:"connections"` // sum of switchyard_connections (handshaking ones included)
	Disconnects float64 `json:"disconnects"` // sum of switchyard_disconnects_total, all reasons
	// HandshakeTimeouts is the part of Disconnects with reason
	// handshake_timeout: connections that never became sessions.
	HandshakeTimeouts float64 `json:"handshake_timeouts"`
	GatewayRSS        float64 `json:"gateway_rss"` // bytes, all gateways
	GatewayCPU        float64 `json:"gateway_cpu"` // clock ticks, all gateways
	BackendRSS        float64 `json:"backend_rss"` // bytes, all shards
	BackendCPU        float64 `json:"backend_cpu"` // clock ticks, all shards
	// Sums over the gateways of switchyard_handshake_duration_seconds
	// (accept → WELCOME): the mean between two samples tells how long a
	// device waited for its session.
	HandshakeSum   float64 `json:"handshake_sum"`
	HandshakeCount float64 `json:"handshake_count"`
	LoadgenRSS     float64 `json:"loadgen_rss"`  // bytes, loadgen and its children
	LoadgenCPU     float64 `json:"loadgen_cpu"`  // clock ticks
	Slab           float64 `json:"slab"`         // /proc/meminfo Slab, bytes
	TCPMem         float64 `json:"tcp_mem"`      // /proc/net/sockstat TCP mem, bytes
	TCPInUse       float64 `json:"tcp_inuse"`    // /proc/net/sockstat TCP inuse
	MemUsed        float64 `json:"mem_used"`     // MemTotal − MemAvailable, bytes
	MemAvail       float64 `json:"mem_avail"`    // MemAvailable, bytes
	HostBusy       float64 `json:"host_busy"`    // clock ticks, whole machine
	ListenDrops    float64 `json:"listen_drops"` // TcpExt ListenDrops (SYNs dropped at a full accept queue)
}

func (cl *cluster) sample() sample {
	var s sample
	// The gateways are scraped at once: one by one, 55 of them on an
	// overloaded box took longer than the sampling interval.
	pages := cl.gatewayPages()
	for i, g := range cl.gateways {
		m := pages[i]
		s.Sessions += m["switchyard_sessions"]
		s.Connections += m["switchyard_connections"]
		s.HandshakeSum += m["switchyard_handshake_duration_seconds_sum"]
		s.HandshakeCount += m["switchyard_handshake_duration_seconds_count"]
		for k, v := range m {
			if strings.HasPrefix(k, "switchyard_disconnects_total") {
				s.Disconnects += v
				if strings.Contains(k, `reason="handshake_timeout"`) {
					s.HandshakeTimeouts += v
				}
			}
		}
		if mi, err := procstat.Mem(g.cmd.Process.Pid); err == nil {
			s.GatewayRSS += float64(mi.RSS)
		}
		if t, err := procstat.CPU(g.cmd.Process.Pid); err == nil {
			s.GatewayCPU += float64(t.Total())
		}
	}
	for _, b := range cl.shards() {
		if b.exited() {
			continue
		}
		if mi, err := procstat.Mem(b.cmd.Process.Pid); err == nil {
			s.BackendRSS += float64(mi.RSS)
		}
		if t, err := procstat.CPU(b.cmd.Process.Pid); err == nil {
			s.BackendCPU += float64(t.Total())
		}
	}
	if cl.loadgen != nil {
		pid := cl.loadgen.cmd.Process.Pid
		if mi, err := procstat.Mem(pid); err == nil {
			s.LoadgenRSS += float64(mi.RSS)
		}
		kids, _ := procstat.DescendantsRSS(pid)
		s.LoadgenRSS += float64(kids)
		if t, err := procstat.CPU(pid); err == nil {
			s.LoadgenCPU += float64(t.Total())
		}
		kcpu, _, _ := procstat.DescendantsCPU(pid)
		s.LoadgenCPU += float64(kcpu.Total())
	}
	mem := procstat.Meminfo()
	s.Slab = mem["Slab"]
	s.MemUsed = mem["MemTotal"] - mem["MemAvailable"]
	s.MemAvail = mem["MemAvailable"]
	s.TCPInUse, s.TCPMem = procstat.TCPSockets()
	busy, _, _ := procstat.HostCPU()
	s.HostBusy = float64(busy)
	s.ListenDrops = procstat.TCPExt("ListenDrops")
	return s
}

var httpClient = &http.Client{Timeout: 3 * time.Second}

func getJSON(url string, v any) error {
	resp, err := httpClient.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// getMetrics reads a Prometheus text page into name{labels} → value.
func getMetrics(url string) (map[string]float64, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return parseMetrics(resp.Body), nil
}

func parseMetrics(r io.Reader) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// cores is the CPU use between two tick readings dt seconds apart.
func cores(before, after, dt float64) float64 {
	if dt <= 0 {
		return 0
	}
	return (after - before) / float64(procstat.ClockTicks()) / dt
}

// meanHandshake is the mean accept → WELCOME time of the handshakes
// between two samples.
func meanHandshake(a, b sample) string {
	n := b.HandshakeCount - a.HandshakeCount
	if n <= 0 {
		return "–"
	}
	return (time.Duration((b.HandshakeSum - a.HandshakeSum) / n * 1e9)).Round(time.Millisecond).String()
}
