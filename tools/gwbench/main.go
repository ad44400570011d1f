package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `gwbench measures a server speaking the Switchyard device protocol.

  gwbench mem       --addr HOST:PORT --pid PID [--name NAME] [--out FILE] [--n 15000] ...
  gwbench cpu       --addr HOST:PORT --pid PID [--conns 100 --window 16 --payload 64 --duration 10s]
                    [--rate N --rate-tick 1ms]   (open loop: N frames/s on a schedule)
  gwbench handshake --addr HOST:PORT --pid PID [--workers 64 --duration 10s]
  gwbench check     --addr HOST:PORT   (protocol probes: run before measuring)
  gwbench compare   --target 'NAME=CMD ARGS {addr} {admin}' ... [--scenarios mem,cpu,handshake] [--reps 3]
  gwbench plot      --in FILE.jsonl ... --out-dir DIR [--since RFC3339] [--baseline NAME] [--targets a,b]

Run "gwbench SUBCOMMAND -h" for every flag.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "mem", "cpu", "handshake":
		err = runOne(ctx, cmd, args)
	case "memworker":
		err = memWorker(args)
	case "compare":
		err = runCompare(ctx, args)
	case "check":
		err = runCheck(ctx, args)
	case "plot":
		err = runPlot(args)
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// target is the server under test.
type target struct {
	name string // label in the results
	addr string // device address
	pid  int    // process whose RSS and CPU are read
}

// common are the options every scenario shares.
type common struct {
	out        string // results file, JSON lines appended
	secretFile string // HMAC secret file (first line used); empty: no token
	spread     spread
	auth       auth
	tls        bool // speak TLS to the target (tls.go)
}

func (o *common) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.out, "out", "", "append each result as one JSON line to this file")
	fs.StringVar(&o.secretFile, "auth-secret-file", "", "secret file of the target; HELLOs then carry a token made with its first line")
	fs.IntVar(&o.spread.first, "src-first", 2, "last octet of the first source address 127.0.0.x")
	fs.BoolVar(&o.tls, "tls", false, "speak TLS to the target (its certificate is not verified: a loopback benchmark)")
	fs.IntVar(&o.spread.n, "src-spread", 16, "number of source addresses 127.0.0.x to spread connections over (0: kernel's choice)")
}

// setup validates the options and loads the secret.
func (o *common) setup() error {
	if err := o.spread.validate(); err != nil {
		return err
	}
	if o.secretFile == "" {
		return nil
	}
	secrets, err := readFirstLine(o.secretFile)
	if err != nil {
		return err
	}
	o.auth.secret = secrets
	return nil
}

func readFirstLine(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for i, c := range b {
		if c == '\n' || c == '\r' {
			b = b[:i]
			break
		}
	}
	if len(b) == 0 {
		return nil, errors.New("gwbench: empty secret file")
	}
	return b, nil
}

// scenarioConfig holds the parameters of every scenario.
type scenarioConfig struct {
	mem memConfig
	cpu cpuConfig
	hs  handshakeConfig
}

func runOne(ctx context.Context, name string, args []string) error {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	var t target
	var o common
	var sc scenarioConfig
	fs.StringVar(&t.addr, "addr", "127.0.0.1:7400", "target device address (loopback)")
	fs.IntVar(&t.pid, "pid", 0, "target process id (required: RSS and CPU are read from /proc/PID)")
	fs.StringVar(&t.name, "name", "target", "target name in the results")
	o.flags(fs)
	switch name {
	case "mem":
		sc.mem.flags(fs, "")
	case "cpu":
		sc.cpu.flags(fs, "")
	case "handshake":
		sc.hs.flags(fs, "")
	}
	fs.Parse(args)
	if t.pid <= 0 {
		return errors.New("gwbench: --pid is required")
	}
	if err := o.setup(); err != nil {
		return err
	}
	r, err := runScenario(ctx, name, t, o, sc)
	if err != nil {
		return err
	}
	return r.emit(o.out)
}

func runScenario(ctx context.Context, name string, t target, o common, sc scenarioConfig) (*Result, error) {
	switch name {
	case "mem":
		return runMem(ctx, t, o, sc.mem)
	case "cpu":
		return runCPU(ctx, t, o, sc.cpu)
	case "handshake":
		return runHandshake(ctx, t, o, sc.hs)
	}
	return nil, fmt.Errorf("gwbench: unknown scenario %q", name)
}
