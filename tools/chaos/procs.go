package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Processes: every child is forked from one goroutine locked to its OS
// thread for the life of the tool, with Pdeathsig SIGKILL (the kernel
// sends it when the forking *thread* dies, so that thread must not be one
// the Go runtime may retire) and in its own process group (a signal to
// the tool's terminal group does not reach it; loadgen's children go with
// its group). Whatever ends the tool, nothing it started outlives it; a
// normal end, an error or SIGINT/SIGTERM stops each one by pid and waits.

// Every child inherits the forking thread's niceness (Linux keeps it per
// thread): with --nice below 0 (when the tool may: root or CAP_SYS_NICE)
// the cluster's timers fire on time on a box whose CPU other work
// saturates. The product's links give up on a shard that read nothing
// for 1 s; on a starved box that is every shard, and the run would judge
// the box instead of the guarantees. The children use little CPU: the
// priority takes little from anyone else.

// spawner forks children from one locked thread.
type spawner struct {
	req  chan spawnReq
	nice int
	err  error // from setting the niceness, for the log
}

type spawnReq struct {
	cmd   *exec.Cmd
	reply chan error
}

// newSpawner starts the spawner's thread at niceness nice (0: unchanged).
func newSpawner(nice int) *spawner {
	s := &spawner{req: make(chan spawnReq), nice: nice}
	ready := make(chan struct{})
	go s.loop(ready)
	<-ready
	return s
}

// loop keeps its thread locked until close: the children it forked die
// with that thread, so close only once every one has exited.
func (s *spawner) loop(ready chan<- struct{}) {
	runtime.LockOSThread()
	if s.nice != 0 {
		s.err = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), s.nice)
	}
	close(ready)
	for r := range s.req {
		r.reply <- r.cmd.Start()
	}
}

// close ends the spawner (its thread exits with it).
func (s *spawner) close() { close(s.req) }

func (s *spawner) start(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	r := spawnReq{cmd: cmd, reply: make(chan error, 1)}
	s.req <- r
	return <-r.reply
}

// proc is one running (or exited) child.
type proc struct {
	cmd   *exec.Cmd
	done  chan struct{} // closed once it exited and was waited for
	err   error         // Wait's result, once done
	ended time.Time
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// signal sends sig to the child's process group (its pid).
func (p *proc) signal(sig syscall.Signal) {
	if !p.exited() {
		_ = syscall.Kill(-p.pid(), sig)
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILL, and waits.
func (p *proc) stop(grace time.Duration) {
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.signal(syscall.SIGKILL)
		<-p.done
	}
}

// kill sends SIGKILL and waits.
func (p *proc) kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

// spawn starts argv with its output to log (appended), or to out when
// log is "" (out is then the caller's to read).
func (s *spawner) spawn(log string, out io.Writer, argv ...string) (*proc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	var f *os.File
	if log != "" {
		var err error
		if f, err = os.OpenFile(log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = f, f
	} else {
		cmd.Stderr = out
	}
	err := s.start(cmd)
	if f != nil {
		f.Close() // the child has its own copy
	}
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(argv[0]), err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		p.ended = time.Now()
		close(p.done)
	}()
	return p, nil
}

// ports hands out loopback ports free for TCP and UDP (gossip binds
// both), below the kernel's ephemeral range (32768–60999) so that no
// outgoing connection takes one while its process is down, from a random
// start so that two runs on the box (or tools/scale, which counts up from
// 20000) rarely meet. A member keeps its ports across restarts.
type ports struct {
	mu   sync.Mutex
	next int
}

func newPorts() *ports {
	n, _ := rand.Int(rand.Reader, big.NewInt(20000))
	return &ports{next: 10000 + int(n.Int64())}
}

func (ps *ports) addr() (string, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for range 5000 {
		port := ps.next
		ps.next++
		if ps.next >= 32768 {
			ps.next = 10000
		}
		a := fmt.Sprintf("127.0.0.1:%d", port)
		l, err := net.Listen("tcp", a)
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", a)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return a, nil
	}
	return "", errors.New("chaos: no free port in 10000–32767")
}

// writeKey writes a random cluster key file.
func writeKey(path string) error {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o600)
}

// httpClient reads the gateways' admin API: a new connection each time,
// so that nothing is left open once the run ends.
var httpClient = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// httpGet returns the body of a 200 answer.
func httpGet(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return b, nil
}

// dial checks that addr accepts a TCP connection.
func dial(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// metric reads the value of a metric line name (exact, labels included)
// from a Prometheus text page; false when absent.
func metric(page []byte, name string) (float64, bool) {
	for _, line := range strings.Split(string(page), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f, true
			}
		}
	}
	return 0, false
}
