package testcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
)

// adminToken is the admin token of the gateways of these tests.
const adminToken = "procs-admin-token-0123456789"

// tokenFlags are the gateway flags that set the admin token: from a file
// when the binary takes one, else on the command line.
func tokenFlags(t *testing.T, bin, file string) []string {
	t.Helper()
	out, _ := exec.Command(bin, "gateway", "-h").CombinedOutput()
	if bytes.Contains(out, []byte("-admin-token-file")) {
		return []string{"--admin-token-file", file}
	}
	return []string{"--admin-token", adminToken}
}

// writeToken writes the admin token file.
func writeToken(t *testing.T, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ctlResult is one `switchyard ctl` run.
type ctlResult struct {
	code     int
	out, err string
}

// ctl runs `switchyard ctl` against the admin API of gateway pr.
func ctl(t *testing.T, bin string, pr *Proc, tokenFile string, args ...string) ctlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), poll.Patience)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"ctl", "--admin", pr.Admin, "--token-file", tokenFile}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := ctlResult{out: out.String(), err: errOut.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("ctl %q: %v", args, err)
	}
	return r
}

// mustCtl runs ctl and fails the test unless it exits 0 with every want
// in its output.
func mustCtl(t *testing.T, bin string, pr *Proc, tokenFile string, args []string, want ...string) string {
	t.Helper()
	r := ctl(t, bin, pr, tokenFile, args...)
	if r.code != 0 {
		t.Fatalf("ctl %q: exit %d: %s", args, r.code, r.err)
	}
	for _, w := range want {
		if !strings.Contains(r.out, w) {
			t.Fatalf("ctl %q output lacks %q:\n%s", args, w, r.out)
		}
	}
	return r.out
}

// TestProcsCtl: `switchyard ctl` against a cluster of switchyard
// processes (2 gateways × 2 counter shards): info, members, ring,
// sessions, session; a wrong token gets 401 and changes nothing; a kick
// reaches the device as ERROR 409; drain-shard moves the shard's sessions
// with their state (the device stays connected, its count goes on) and
// the shard exits; drain makes the gateway exit.
func TestProcsCtl(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process: skipped under -short")
	}
	bin := Binary(t)
	tok := writeToken(t, adminToken)
	p, ctx := convergedProcs(t, Options{Gateways: 2, Shards: 2, App: "counter", GatewayFlags: tokenFlags(t, bin, tok)}, 3*poll.Patience)
	gw, gw1 := p.Gateway(0), p.Gateway(1)
	s0, s1 := p.Shard(0).Name, p.Shard(1).Name

	mustCtl(t, bin, gw, tok, []string{"info"}, "name         "+gw.Name, "role         gateway", "ready        true",
		"listen       "+gw.Addr, "gossip       ")
	mustCtl(t, bin, gw, tok, []string{"members"}, "NAME", s0, s1, "gateway", "backend")
	mustCtl(t, bin, gw, tok, []string{"ring"}, "2 shard(s) in the ring", s0+" ", s1+" ", "active")

	ring := p.Ring()
	moverID := deviceOn(ring, "mover", s1)
	mover := Dial(ctx, t, client.Config{Addr: gw.Addr, ID: moverID})
	var count uint64
	for range 3 {
		reply, err := Exchange(ctx, mover, "tick")
		if err != nil {
			t.Fatal(err)
		}
		var shard string
		if shard, count, err = CounterReply(reply); err != nil || shard != s1 {
			t.Fatalf("reply %q (%v), want one from %s", reply, err, s1)
		}
	}
	kickID := deviceOn(ring, "kicked", s0)
	kicked := rawHello(t, gw.Addr, kickID)

	mustCtl(t, bin, gw, tok, []string{"sessions"}, "DEVICE", moverID, kickID)
	mustCtl(t, bin, gw, tok, []string{"session", moverID}, moverID, "true")
	if r := ctl(t, bin, gw, tok, "-o", "json", "session", moverID); r.code != 0 || !strings.Contains(r.out, `"device": "`+moverID+`"`) {
		t.Fatalf("session -o json: %+v", r)
	}

	// A wrong token: 401, nothing kicked, nothing drained.
	bad := writeToken(t, "wrong-token")
	for _, args := range [][]string{{"info"}, {"kick", kickID}, {"drain-shard", s1}, {"drain"}} {
		if r := ctl(t, bin, gw, bad, args...); r.code != 1 || !strings.Contains(r.err, "unauthorized (401)") {
			t.Fatalf("ctl %q with a wrong token: %+v", args, r)
		}
	}
	if _, err := Exchange(ctx, mover, "tick"); err != nil {
		t.Fatalf("after the refused calls: %v", err)
	}
	count++
	if p.Shard(1).Exited() || gw.Exited() {
		t.Fatal("a refused drain was carried out")
	}

	// Kick: the device gets ERROR 409 and the connection closes.
	mustCtl(t, bin, gw, tok, []string{"kick", kickID, "--reason", "maintenance"}, "kicked "+kickID+": ERROR 409")
	for {
		f, err := kicked.read(poll.Patience)
		if err != nil {
			t.Fatalf("kicked device: no ERROR before %v", err)
		}
		if f.Type == protocol.TypeError {
			var e protocol.ErrorMsg
			if err := protocol.Unmarshal(f.Payload, &e); err != nil || e.Code != protocol.CodeConflict ||
				!strings.Contains(e.Message, "maintenance") {
				t.Fatalf("kicked device got ERROR %+v (%v)", e, err)
			}
			break
		}
	}
	if _, err := kicked.read(poll.Patience); err == nil {
		t.Fatal("the kicked connection stayed open")
	}
	if r := ctl(t, bin, gw, tok, "kick", kickID); r.code != 1 || !strings.Contains(r.err, "404") {
		t.Fatalf("second kick: %+v", r)
	}

	// Drain a shard: it exits; the device stays connected and its counter
	// goes on, now on the other shard.
	mustCtl(t, bin, gw, tok, []string{"drain-shard", s1}, "shard "+s1)
	poll.Until(t, poll.Patience, func() error {
		if !p.Shard(1).Exited() {
			return fmt.Errorf("shard %s still running after drain-shard", s1)
		}
		return nil
	})
	p.Shard(1).markGone()
	if err := p.Shard(1).err; err != nil {
		t.Fatalf("drained shard exited with %v:\n%s", err, tail(p.Shard(1).Log(), 20))
	}
	reply, err := Exchange(ctx, mover, "tick")
	if err != nil {
		t.Fatalf("device after drain-shard: %v", err)
	}
	shard, n, err := CounterReply(reply)
	if err != nil || shard != s0 || n != count+1 {
		t.Fatalf("after drain-shard: reply %q, want %s %d (state moved)", reply, s0, count+1)
	}
	if st := mover.Stats(); st.Reconnects != 0 {
		t.Fatalf("the device reconnected %d times during the shard drain", st.Reconnects)
	}

	// Drain a gateway: it exits cleanly.
	mustCtl(t, bin, gw1, tok, []string{"drain"}, "gateway "+gw1.Name+" draining")
	gw1.markGone()
	select {
	case <-gw1.done:
	case <-time.After(poll.Patience):
		t.Fatal("gateway still running after ctl drain")
	}
	if gw1.err != nil {
		t.Fatalf("drained gateway exited with %v", gw1.err)
	}
	if !strings.Contains(gw1.Log(), "drain requested through the admin API") {
		t.Fatalf("gateway log:\n%s", tail(gw1.Log(), 20))
	}
}

// TestProcsExampleShard: the echo example's own main (backend.Run),
// built on its own, joins a switchyard gateway process; /readyz turns
// 200 once it is in the ring, a device gets its echo, and SIGTERM drains
// the shard and exits 0.
func TestProcsExampleShard(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process: skipped under -short")
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "echo-shard")
	if out, err := exec.Command("go", "build", "-C", root, "-o", bin, "./examples/echo/cmd/echo-shard").CombinedOutput(); err != nil {
		t.Fatalf("go build echo-shard: %v\n%s", err, out)
	}
	p := NewProcs(t, Options{Gateways: 1})
	gw := p.Gateway(0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*poll.Patience)
	defer cancel()
	if err := readyz(ctx, gw.Admin); err == nil {
		t.Fatal("/readyz 200 without a shard in the ring")
	}

	link, _ := freeAddr(false)
	gossip, _ := freeAddr(true)
	logPath := filepath.Join(t.TempDir(), "echo-shard.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-shard", "example-1", "-link", link, "-gossip", gossip, "-join", gw.Gossip,
		"-cluster-key-file", p.keyFile, "-drain-timeout", "2s")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	})
	log := func() string { b, _ := os.ReadFile(logPath); return string(b) }

	poll.Until(t, 2*poll.Patience, func() error {
		if err := readyz(ctx, gw.Admin); err != nil {
			return fmt.Errorf("gateway not ready with the example shard: %v\n%s", err, log())
		}
		return nil
	})
	c := Dial(ctx, t, client.Config{Addr: gw.Addr, ID: "example-device"})
	if reply, err := Exchange(ctx, c, "hello, example"); err != nil || reply != "hello, example" {
		t.Fatalf("echo through the example shard: %q, %v", reply, err)
	}
	c.Close()

	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("echo-shard exited with %v:\n%s", err, log())
		}
	case <-time.After(poll.Patience):
		t.Fatalf("echo-shard still running after SIGTERM:\n%s", log())
	}
	if l := log(); !strings.Contains(l, "shard in the cluster") || !strings.Contains(l, "drained") || strings.Contains(l, "level=WARN") {
		t.Fatalf("echo-shard log:\n%s", l)
	}
}

// TestProcsBackendWrongKey: `switchyard backend` with a key file that is
// not the cluster's never joins, and says so in its log at WARN (it used
// to log nothing and report that it started).
func TestProcsBackendWrongKey(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process: skipped under -short")
	}
	p := NewProcs(t, Options{Gateways: 1})
	wrong := filepath.Join(t.TempDir(), "wrong.key")
	if err := os.WriteFile(wrong, []byte("not-the-cluster-key-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link, _ := freeAddr(false)
	gossip, _ := freeAddr(true)
	pr := &Proc{Role: "backend", Name: "wrong-key", Addr: link, Gossip: gossip, logPath: filepath.Join(p.dir, "backend-wrong-key.log")}
	if err := p.start(pr, []string{"backend", "--shard", "wrong-key", "--link", link, "--admin", "-", "--gossip", gossip,
		"--join", p.Gateway(0).Gossip, "--cluster-key-file", wrong}); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.shards = append(p.shards, pr) // killed with the others
	p.mu.Unlock()
	poll.Until(t, poll.Patience, func() error {
		if l := pr.Log(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "check the cluster key file") {
			return fmt.Errorf("no WARN about the key yet:\n%s", l)
		}
		return nil
	})
	if err := readyz(context.Background(), p.Gateway(0).Admin); err == nil {
		t.Fatal("the gateway is ready: the wrong-key shard got into its ring")
	}
}
