package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// load is the loadgen process and what its progress lines say.
type load struct {
	p         *proc
	json      string // its summary file
	incidents string // its incident log
	log       string // its stderr, copied

	mu   sync.Mutex
	last progress  // the latest progress line
	at   time.Time // when it came
}

// progress is one of loadgen's per-second lines:
//
//	loadgen: t=  12s up=300/300 sent/s=600 recv/s=600 p50=1.2ms p99=3.4ms errors=0 disc=0 reconn=0 moved=0
type progress struct {
	T                    float64
	Up, Sessions         int
	SentPS, RecvPS       float64
	Errors, Disc, Reconn int64
	Moved                int64
}

// parseProgress reads one progress line; false for any other line.
func parseProgress(line string) (progress, bool) {
	rest, ok := strings.CutPrefix(line, "loadgen: t=")
	if !ok {
		return progress{}, false
	}
	var p progress
	t, rest, _ := strings.Cut(strings.TrimSpace(rest), "s ")
	var err error
	if p.T, err = strconv.ParseFloat(t, 64); err != nil {
		return progress{}, false
	}
	for _, f := range strings.Fields(rest) {
		k, v, _ := strings.Cut(f, "=")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "up":
			a, b, _ := strings.Cut(v, "/")
			p.Up, _ = strconv.Atoi(a)
			p.Sessions, _ = strconv.Atoi(b)
		case "sent/s":
			p.SentPS, _ = strconv.ParseFloat(v, 64)
		case "recv/s":
			p.RecvPS, _ = strconv.ParseFloat(v, 64)
		case "errors":
			p.Errors = n
		case "disc":
			p.Disc = n
		case "reconn":
			p.Reconn = n
		case "moved":
			p.Moved = n
		}
	}
	return p, true
}

// loadDrain is how long loadgen waits, once stopped, for the replies and
// ACKs still outstanding: on a settled cluster they take well under a
// second; what is still missing after this is lost.
const loadDrain = 30 * time.Second

// startLoad starts `loadgen --verify` over every gateway. Its --duration
// is the whole deadline: the run ends it with SIGTERM (it drains, then
// writes its summary).
func (cl *cluster) startLoad() (*load, error) {
	var addrs []string
	for _, g := range cl.live(true) {
		addrs = append(addrs, g.addr)
	}
	l := &load{json: filepath.Join(cl.dir, "loadgen.json"), incidents: filepath.Join(cl.dir, "incidents.jsonl"),
		log: filepath.Join(cl.dir, "loadgen.log")}
	c := cl.cfg
	argv := []string{filepath.Join(c.Bin, "loadgen"), "--addr", strings.Join(addrs, ","),
		"--sessions", strconv.Itoa(c.Sessions), "--rate", strconv.FormatFloat(c.Rate, 'f', -1, 64),
		"--ramp", strconv.FormatFloat(c.Ramp, 'f', -1, 64), "--verify",
		"--duration", c.Deadline.String(), "--drain", loadDrain.String(),
		"--id-prefix", fmt.Sprintf("chaos-%d-", c.Seed), "--json", l.json, "--incidents", l.incidents}
	argv = append(argv, strings.Fields(c.LoadgenArgs)...)
	pr, pw := io.Pipe()
	p, err := cl.sp.spawn("", pw, argv...)
	if err != nil {
		pw.Close()
		return nil, err
	}
	l.p = p
	cl.loadgen = p
	f, err := os.Create(l.log)
	if err != nil {
		return nil, err
	}
	go func() {
		<-p.done
		pw.Close()
	}()
	go l.read(pr, f)
	return l, nil
}

// read copies loadgen's stderr to its log and keeps the latest progress.
func (l *load) read(r io.Reader, log *os.File) {
	defer log.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fmt.Fprintln(log, sc.Text())
		if p, ok := parseProgress(sc.Text()); ok {
			l.mu.Lock()
			l.last, l.at = p, time.Now()
			l.mu.Unlock()
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// latest is the latest progress line and when it came.
func (l *load) latest() (progress, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last, l.at
}

// allUp checks that a progress line newer than since shows every session up.
func (l *load) allUp(since time.Time) error {
	p, at := l.latest()
	switch {
	case l.p.exited():
		return fmt.Errorf("loadgen exited: %v", l.p.err)
	case at.Before(since):
		return fmt.Errorf("no loadgen progress since %s", since.Format("15:04:05.000"))
	case p.Up < p.Sessions || p.Sessions == 0:
		return fmt.Errorf("loadgen: %d of %d sessions up", p.Up, p.Sessions)
	}
	return nil
}
