package testcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
)

// TestProcsReload: reloadable keys of a running `switchyard gateway`
// changed by SIGHUP while devices send DATA through it, each shown to
// take effect, and not one device disconnected (the other live keys are
// in TestProcsReloadLive, canary in TestProcsCanary):
//   - rate, rate_burst: a device whose bursts passed gets 429;
//   - log_level: memberlist's debug lines appear in the log;
//   - auth_secret_file: a device the old secret refused is admitted;
//   - max_conns: a device beyond the new cap gets 503;
//   - cluster_key_file, rotated in three reloads of the gateway and the
//     shard: a resume token signed with the old key resumes while that key
//     is still listed and not after it was dropped, and a new shard that
//     holds only the new key joins the gossip, links to the gateway and
//     serves devices.
func TestProcsReload(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process: skipped under -short")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "gateway.yaml")
	base := "rate: 1000\nrate_burst: 1000\nrate_excess_close: 1m\ncluster:\n  push_pull_interval: 1s\n"
	writeFile(t, conf, base+"log_level: info\n")
	p, ctx := convergedProcs(t, Options{Gateways: 1, Shards: 1, App: "counter",
		GatewayFlags: []string{"--config", conf}}, 4*poll.Patience)
	gw, shard := p.Gateway(0), p.Shard(0)
	reloads := map[*Proc]int{}
	reload := func(prs ...*Proc) {
		t.Helper()
		for _, pr := range prs {
			reloads[pr]++
			if err := pr.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			poll.Until(t, poll.Patience, func() error {
				if n := strings.Count(pr.Log(), `msg="configuration reloaded"`); n < reloads[pr] {
					return fmt.Errorf("%s: %d reloads logged, want %d:\n%s", pr.Name, n, reloads[pr], tail(pr.Log(), 10))
				}
				return nil
			})
		}
	}

	traffic := startTraffic(ctx, t, gw.Addr, 3)

	// Rate limit and log level.
	chatty := Dial(ctx, t, client.Config{Addr: gw.Addr, ID: "chatty", DisableReconnect: true})
	sendBurst := func() {
		for range 30 {
			if err := chatty.Send(ctx, []byte("x"), false); err != nil {
				t.Fatal(err)
			}
		}
		if err := chatty.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sendBurst()
	for range 30 {
		if _, err := chatty.Recv(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := chatty.Stats().RateLimited; n != 0 {
		t.Fatalf("429 at rate 1000: %d", n)
	}
	if strings.Contains(gw.Log(), "push/pull") {
		t.Fatal("debug lines at log level info")
	}
	writeFile(t, conf, "rate: 5\nrate_burst: 5\nrate_excess_close: 1m\ncluster:\n  push_pull_interval: 1s\nlog_level: debug\n")
	reload(gw)
	if !strings.Contains(gw.Log(), `changed="[rate rate_burst log_level]"`) {
		t.Errorf("reload line does not name rate, rate_burst, log_level:\n%s", tail(gw.Log(), 5))
	}
	sendBurst()
	poll.Until(t, poll.Patience, func() error {
		if chatty.Stats().RateLimited == 0 {
			return errors.New("no 429 after the rate was lowered")
		}
		return nil
	})
	poll.Until(t, poll.Patience, func() error {
		if !strings.Contains(gw.Log(), "Initiating push/pull") {
			return errors.New("no memberlist debug line after log_level debug")
		}
		return nil
	})
	writeFile(t, conf, base+"log_level: info\n")
	reload(gw)

	// Device auth secrets.
	secrets := filepath.Join(dir, "auth.secrets")
	writeFile(t, secrets, "secret-a\n")
	writeFile(t, conf, base+"log_level: info\nauth_secret_file: "+secrets+"\n")
	reload(gw)
	_, err := client.Dial(ctx, client.Config{Addr: gw.Addr, ID: "newcomer", Secret: []byte("secret-b"), DisableReconnect: true})
	if !errors.Is(err, &client.Error{Code: protocol.CodeUnauthorized}) {
		t.Fatalf("secret b before the reload: %v, want 401", err)
	}
	writeFile(t, secrets, "secret-b\n")
	reload(gw)
	newcomer := Dial(ctx, t, client.Config{Addr: gw.Addr, ID: "newcomer", Secret: []byte("secret-b"), DisableReconnect: true})
	if _, err := Exchange(ctx, newcomer, "hi"); err != nil {
		t.Fatal(err)
	}
	// Admission: with as many connections as max_conns allows, the next
	// device gets 503. (Auth off again: the harness's probes carry no token.)
	writeFile(t, conf, base+"log_level: info\nmax_conns: 5\n") // 3 traffic devices, chatty, newcomer
	reload(gw)
	_, err = client.Dial(ctx, client.Config{Addr: gw.Addr, ID: "one-too-many", DisableReconnect: true})
	if !errors.Is(err, &client.Error{Code: protocol.CodeUnavailable}) {
		t.Fatalf("a device beyond max_conns: %v, want 503", err)
	}
	writeFile(t, conf, base+"log_level: info\n")
	reload(gw)

	// Cluster keys, rotated in three rounds over the gateway and the shard.
	oldKey, _ := os.ReadFile(p.KeyFile())
	k1 := strings.TrimSpace(string(oldKey))
	k2 := newHexKey()
	tokens := map[string][]byte{}
	for _, id := range []string{"resume-1", "resume-2"} {
		tokens[id] = rawWelcome(t, gw.Addr, id, nil).Resume // signed with k1; the device then goes
	}
	for _, lines := range []string{k1 + "\n" + k2, k2 + "\n" + k1} {
		writeFile(t, p.KeyFile(), lines+"\n")
		reload(shard, gw)
	}
	for _, pr := range []*Proc{gw, shard} {
		if n := strings.Count(pr.Log(), "cluster_keys"); n < 2 {
			t.Errorf("%s: %d reloads name cluster_keys, want 2:\n%s", pr.Name, n, tail(pr.Log(), 5))
		}
	}
	if w := rawWelcome(t, gw.Addr, "resume-1", tokens["resume-1"]); !w.Resumed {
		t.Error("a token signed with the old key, still listed, did not resume")
	}
	writeFile(t, p.KeyFile(), k2+"\n")
	reload(shard, gw)
	if w := rawWelcome(t, gw.Addr, "resume-2", tokens["resume-2"]); w.Resumed {
		t.Error("a token signed with a dropped key resumed")
	}
	fresh := p.StartShard("fresh") // its key file holds k2 only
	if err := p.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	ring := p.Ring()
	id := ""
	for i := 0; id == ""; i++ {
		if s, _ := ring.Owner(fmt.Sprintf("onfresh-%d", i)); s.Name == fresh.Name {
			id = fmt.Sprintf("onfresh-%d", i)
		}
	}
	if got := served(ctx, t, Dial(ctx, t, client.Config{Addr: gw.Addr, ID: id})); got != fresh.Name {
		t.Fatalf("served by %s, want the new shard %s", got, fresh.Name)
	}

	// Not one device disconnected.
	traffic.stop(t)
	if chatty.Stats().Reconnects != 0 || newcomer.Stats().Reconnects != 0 {
		t.Error("a device reconnected")
	}
	for _, pr := range []*Proc{gw, shard} {
		for _, line := range strings.Split(pr.Log(), "\n") {
			if strings.Contains(line, "configuration reloaded") {
				t.Logf("%s: %s", pr.Name, line)
			}
		}
	}
	if strings.Contains(gw.Log(), "reload refused") || strings.Contains(gw.Log(), "reload failed") {
		t.Errorf("a reload failed:\n%s", gw.Log())
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newHexKey() string {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return hex.EncodeToString(k)
}

// rawWelcome makes one handshake as device id (resuming with token when
// set), returns the WELCOME and closes the connection: the session waits
// for a resume on the gateway and its shard.
func rawWelcome(t *testing.T, addr, id string, token []byte) protocol.Welcome {
	t.Helper()
	var w protocol.Welcome
	poll.Until(t, poll.Patience, func() error {
		d, err := dialRaw(addr)
		if err != nil {
			return err
		}
		defer d.nc.Close()
		p, _ := protocol.EncodeHello(&protocol.Hello{V: 1, ID: id, Resume: token})
		if _, err := d.nc.Write(protocol.AppendFrame(nil, protocol.TypeHello, 0, 0, p)); err != nil {
			return err
		}
		f, err := d.read(poll.Patience)
		if err != nil {
			return err
		}
		if f.Type != protocol.TypeWelcome {
			return fmt.Errorf("%s: got %v %q", id, f.Type, f.Payload)
		}
		return protocol.Unmarshal(f.Payload, &w)
	})
	return w
}

func dialRaw(addr string) (*rawDevice, error) {
	nc, err := net.DialTimeout("tcp", addr, poll.Patience)
	if err != nil {
		return nil, err
	}
	return &rawDevice{nc}, nil
}

// traffic is a few devices exchanging reliable DATA through a gateway
// until stop; none may lose its connection.
type traffic struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	errs    []error
	clients []*client.Client
}

func startTraffic(ctx context.Context, t *testing.T, addr string, n int) *traffic {
	t.Helper()
	tctx, cancel := context.WithCancel(ctx)
	tr := &traffic{cancel: cancel}
	for i := range n {
		c := Dial(ctx, t, client.Config{Addr: addr, ID: fmt.Sprintf("traffic-%d", i), DisableReconnect: true,
			ResendTimeout: 300 * time.Millisecond})
		tr.clients = append(tr.clients, c)
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			for tctx.Err() == nil {
				if _, err := Exchange(tctx, c, "tick"); err != nil && tctx.Err() == nil {
					tr.mu.Lock()
					tr.errs = append(tr.errs, err)
					tr.mu.Unlock()
					return
				}
				select {
				case <-tctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}
	return tr
}

// stop ends the traffic and fails t if a device lost its connection or
// cannot exchange one more message.
func (tr *traffic) stop(t *testing.T) {
	t.Helper()
	tr.cancel()
	tr.wg.Wait()
	for _, err := range tr.errs {
		t.Errorf("traffic device: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), poll.Patience)
	defer cancel()
	for i, c := range tr.clients {
		if _, err := Exchange(ctx, c, "last"); err != nil {
			t.Errorf("traffic device %d after the reloads: %v", i, err)
		}
		if n := c.Stats().Reconnects; n != 0 {
			t.Errorf("traffic device %d reconnected %d times", i, n)
		}
	}
}
