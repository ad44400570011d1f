// Command chaos runs a Switchyard cluster under verified reliable load
// and breaks it at random, one event at a time, then judges what the
// devices saw against docs/guarantees.md.
//
//	go run ./tools/chaos --duration 3m                # a 3-minute run, every default event kind
//	go run ./tools/chaos --seed 42 --events kill-gateway,drain-shard
//	make chaos                                        # 10 minutes (CHAOS_DURATION, CHAOS_FLAGS)
//
// It starts --shards counter shards (`switchyard backend --app counter`)
// and --gateways gateways (`switchyard gateway --gossip`), each a separate
// process on loopback joined by gossip, waits until every gateway has
// every shard on its ring, and runs `loadgen --verify` (--sessions sessions
// sending --rate reliable frames/s each, spread over all the gateways,
// resuming where a GOAWAY or the next address takes them). Once every
// session is up, until --duration minus --tail has passed, it picks an
// event at random (seeded: --seed replays a run's choices) among the
// --events kinds that may run now, does it and waits until the cluster
// settled (every live gateway ready, with exactly the live shards on its
// ring and no session moving, and every session up again) before a
// random pause and the next one:
//
//	drain-shard    SIGTERM a shard: it moves its sessions away and exits; then it is restarted
//	               (same name and ports; above --shards it is retired instead)
//	kill-shard     SIGKILL a shard, then restart it
//	add-shard      start one more shard (at most --max-shards): the sessions it now owns move to it
//	drain-gateway  SIGTERM a gateway: GOAWAY, devices resume on another gateway; then restart it
//	kill-gateway   SIGKILL a gateway: devices resume on another gateway; then restart it
//
// At least 2 gateways and 2 shards are up at any time. After --tail of
// load without events it stops loadgen (SIGTERM: it drains and writes its
// summary) and reads its incident log: every connection that ended, with
// its cause and gateway, and every --verify violation, with its time. An
// incident is allowed when an event running then (from its signal until
// --grace after it settled) allows it in the table of verdict.go (and
// docs/chaos.md), each row citing docs/guarantees.md; everything else is
// a violation, by kind: lost, dup, reorder, reset, twice (handled twice)
// and unexpected-disconnect.
//
// Output: a line per event with its time, a status line every 10 s, the
// unexplained incidents, and last one summary line:
//
//	chaos: PASS 612s seed=42 events=37 (drain-shard 8, kill-gateway 7, …) sessions=300 frames=1.2M violations: lost=0 dup=0 reorder=0 reset=0 twice=0 unexpected-disconnect=0
//
// Exit status 0 when nothing disallowed happened, at least one event ran
// and frames flowed; 1 otherwise (and when the cluster could not be
// started or an event did not settle within --settle); 2 on bad flags.
// The run is bounded by --deadline; every process it started is stopped
// by pid (SIGTERM, then SIGKILL) at its end, on SIGINT/SIGTERM too, and
// dies with it (Pdeathsig) if it is killed. Logs stay in --dir.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// config is the run, as the flags give it.
type config struct {
	Duration    time.Duration `json:"duration"`
	Seed        uint64        `json:"seed"`
	Events      []string      `json:"events"`
	Gateways    int           `json:"gateways"`
	Shards      int           `json:"shards"`
	MaxShards   int           `json:"max_shards"`
	Sessions    int           `json:"sessions"`
	Rate        float64       `json:"rate"`
	Ramp        float64       `json:"ramp"`
	Settle      time.Duration `json:"settle"`
	PauseMax    time.Duration `json:"pause_max"`
	DownMax     time.Duration `json:"down_max"`
	Tail        time.Duration `json:"tail"`
	Grace       time.Duration `json:"grace"`
	Deadline    time.Duration `json:"deadline"`
	Nice        int           `json:"nice"`
	Bin         string        `json:"-"`
	Dir         string        `json:"dir"`
	JSON        string        `json:"-"`
	GatewayArgs string        `json:"gateway_args,omitempty"`
	ShardArgs   string        `json:"shard_args,omitempty"`
	LoadgenArgs string        `json:"loadgen_args,omitempty"`
}

// defaultEvents is the event set of a run without --events: every kind.
var defaultEvents = []string{drainShard, killShard, addShard, drainGateway, killGateway}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var events string
	fs.DurationVar(&c.Duration, "duration", 10*time.Minute, "load time: events run until --duration minus --tail after every session is up")
	fs.Uint64Var(&c.Seed, "seed", 0, "random seed of the event choices (0: from the clock; printed, to replay)")
	fs.StringVar(&events, "events", strings.Join(defaultEvents, ","), "comma-separated event kinds: "+strings.Join(eventKinds, ", "))
	fs.IntVar(&c.Gateways, "gateways", 3, "gateway processes (at least 3: one may be down while 2 stay)")
	fs.IntVar(&c.Shards, "shards", 4, "counter shard processes at the start (at least 3)")
	fs.IntVar(&c.MaxShards, "max-shards", 6, "most shards add-shard grows to (a drain above --shards retires the shard)")
	fs.IntVar(&c.Sessions, "sessions", 300, "device sessions (loadgen --sessions)")
	fs.Float64Var(&c.Rate, "rate", 2, "reliable DATA frames/s per session (loadgen --rate)")
	fs.Float64Var(&c.Ramp, "ramp", 100, "sessions started per second (loadgen --ramp)")
	fs.DurationVar(&c.Settle, "settle", 90*time.Second, "longest wait for the cluster to start or settle after an event (and for a process to exit, loadgen to drain)")
	fs.DurationVar(&c.PauseMax, "pause-max", 5*time.Second, "random pause after an event settled, up to this")
	fs.DurationVar(&c.DownMax, "down-max", 3*time.Second, "random time a stopped process stays down before its restart, up to this")
	fs.DurationVar(&c.Tail, "tail", 15*time.Second, "load without events at the end (at least this after the last event settled)")
	fs.DurationVar(&c.Grace, "grace", 3*time.Second, "an event explains incidents until this long after it settled")
	fs.DurationVar(&c.Deadline, "deadline", 0, "stop by itself after this long, whatever happens (0: --duration + 2×--settle + 2 min)")
	fs.IntVar(&c.Nice, "nice", -10, "niceness of every process the run starts, when permitted (procs.go: the product's 1 s link timeout fires on a starved box); 0 leaves it")
	fs.StringVar(&c.Bin, "bin", "", "directory with the switchyard and loadgen binaries (default: go build them into --dir)")
	fs.StringVar(&c.Dir, "dir", "", "directory for the logs, incidents and summary (default: a new temporary directory, kept)")
	fs.StringVar(&c.JSON, "json", "", "also write the JSON summary to `FILE` (it is always written to --dir/chaos.json)")
	fs.StringVar(&c.GatewayArgs, "gateway-args", "", "extra `switchyard gateway` flags, space separated")
	fs.StringVar(&c.ShardArgs, "shard-args", "", "extra `switchyard backend` flags, space separated")
	fs.StringVar(&c.LoadgenArgs, "loadgen-args", "", "extra loadgen flags, space separated")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "chaos breaks a Switchyard cluster under `loadgen --verify` at random and judges what devices saw.\n\nUsage: go run ./tools/chaos [flags]   (the package doc has the details)\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	c.Events = splitList(events)
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	if c.Deadline == 0 {
		c.Deadline = c.Duration + 2*c.Settle + 2*time.Minute
	}
	return c, c.validate()
}

func (c *config) validate() error {
	var errs []error
	errs = append(errs, parseEvents(c.Events))
	if c.Gateways < 3 || c.Shards < 3 || c.MaxShards < c.Shards {
		errs = append(errs, errors.New("--gateways and --shards must be at least 3, --max-shards at least --shards"))
	}
	if c.Sessions < 1 || c.Rate <= 0 || c.Ramp <= 0 {
		errs = append(errs, errors.New("--sessions, --rate and --ramp must be positive"))
	}
	if c.Duration <= c.Tail || c.Settle <= 0 || c.PauseMax < 0 || c.DownMax < 0 || c.Grace < 0 {
		errs = append(errs, errors.New("--duration must exceed --tail; --settle positive; --pause-max, --down-max, --grace >= 0"))
	}
	return errors.Join(errs...)
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs the tool; its last line on stdout is the summary.
func realMain(args []string, stdout, stderr io.Writer) int {
	c, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, c.Deadline)
	defer cancel()
	sum := run(ctx, c, stdout)
	fmt.Fprintln(stdout, sum.line())
	if sum.Pass {
		return 0
	}
	return 1
}

// build puts the switchyard and loadgen binaries into dir.
func build(dir string) error {
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	for pkg, name := range map[string]string{"./cmd/switchyard": "switchyard", "./tools/loadgen": "loadgen"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = filepath.Dir(strings.TrimSpace(string(root)))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return nil
}
