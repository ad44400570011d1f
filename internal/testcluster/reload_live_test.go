package testcluster

import (
	"bytes"
	"context"
	byteorder "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
	"github.com/switchyard-gw/switchyard/server"
)

// TestProcsReloadLive: the reloadable gateway keys TestProcsReload does
// not cover, each changed on a running `switchyard gateway` (with a
// echo shard) while devices send DATA through it, each shown to take
// effect from outside the process, half of them by `switchyard ctl
// reload` and half by SIGHUP; every reload reports exactly the keys
// changed as applied and nothing as needing a restart, and not one device
// of the steady traffic disconnects. Effects are shown by the order of
// events, never by durations:
//   - rate_burst (SIGHUP) alone, from 50 to 5: 30 frames at once pass
//     before, 100 at once get ERROR 429 after;
//   - accept_rate, accept_burst (ctl) tiny: the next new connections get
//     ERROR 503 and switchyard_connections_rejected_total{reason=
//     "accept_rate"} grows;
//   - handshake_timeout (SIGHUP) from 10m to 300ms: a silent connection
//     opened after the reload gets ERROR 408 and is closed while one
//     opened before it is still open;
//   - resume_token_ttl (ctl) from 24h to 1h: the expiry in the WELCOME's
//     resume token (docs/protocol.md "Resume tokens") drops by about 23h;
//   - resume_window (ctl) from 5m to 1s: a session detached after the
//     reload expires (admin lookup 404, switchyard_sessions drops) while
//     one detached before it still waits;
//   - rate_excess_close (SIGHUP) from 1h to 300ms: a flooding device that
//     was only rate-limited (ERROR 429) is closed ("closing") after it;
//   - max_outbound (ctl) from 16 MiB to 128 KiB: a device that does not
//     read, asking for 6 MB of echoes, gets them all before the reload and
//     is closed as a slow consumer after it;
//   - drain_timeout, go_away_retry, redirects (SIGHUP), shown by the
//     drain that ends the test: GOAWAY carries the new retry and
//     redirect, and every device gets it and the gateway exits. The
//     GOAWAYs are spread over half the drain timeout less the retry: under
//     the old 1h, with the eight or so connections left, the second would
//     get its GOAWAY minutes later, far beyond the test's deadline; under
//     1s, at once.
//
// canary is covered by TestProcsCanary.
func TestProcsReloadLive(t *testing.T) {
	keys := map[string]string{
		"rate": "50", "rate_burst": "50", "rate_excess_close": "1h",
		"handshake_timeout": "10m", "resume_window": "5m", "resume_token_ttl": "24h",
		"drain_timeout": "1h", "go_away_retry": "5s", "max_outbound": "16777216",
		// The max_outbound check below writes 6 MB at once: past the
		// default max_unread (restart-only: never changed here), and past
		// the default max_link_queue (4 MiB) whenever the shard echoes
		// slower than the device writes (a busy box): the gateway would
		// drop the excess toward the shard (link_dropped_envelopes) and
		// the device wait for echoes that never come (CI, 2026-12-04).
		"max_unread": "16777216", "max_link_queue": "67108864",
	}
	cp := configuredProcs(t, Options{Gateways: 1, Shards: 1, App: "echo", OwnDrainSettings: true}, yamlOf(keys), 4*poll.Patience)
	p, ctx, bin, tok, conf := cp.Procs, cp.ctx, cp.bin, cp.tokenFile, cp.conf
	gw := p.Gateway(0)

	// reload writes the configuration file with set applied (an empty
	// value deletes the key) and reloads the gateway by ctl or SIGHUP; the
	// reload must report exactly the keys of set as changed, none as
	// needing a restart.
	reload := func(via string, set map[string]string) {
		t.Helper()
		var want []string
		for k, v := range set {
			want = append(want, k)
			if v == "" {
				delete(keys, k)
			} else {
				keys[k] = v
			}
		}
		writeFile(t, conf, yamlOf(keys))
		var rep server.ReloadReport
		if via == "ctl" {
			out := mustCtl(t, bin, gw, tok, []string{"-o", "json", "reload"})
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("ctl reload -o json: %v:\n%s", err, out)
			}
		} else {
			rep = sighupReload(t, gw)
		}
		if !sameSet(rep.Changed, want) || len(rep.RestartRequired) != 0 {
			t.Fatalf("reload by %s of %v: changed %v, restart required %v", via, want, rep.Changed, rep.RestartRequired)
		}
	}

	traffic := startTraffic(ctx, t, gw.Addr, 3)

	// rate_burst alone (the rate stays): 30 frames at once all pass under
	// a burst of 50; under a burst of 5, 100 frames at once get 429.
	bursty := rawHello(t, gw.Addr, "bursty")
	burst := func(n int) (echoes int, limited bool) {
		frame := protocol.AppendFrame(nil, protocol.TypeData, 0, 0, []byte("b"))
		if _, err := bursty.nc.Write(bytes.Repeat(frame, n)); err != nil {
			t.Fatal(err)
		}
		for echoes < n && !limited {
			f, err := bursty.read(poll.Patience)
			if err != nil {
				t.Fatalf("bursty: %d echoes of %d, then %v", echoes, n, err)
			}
			switch f.Type {
			case protocol.TypeData:
				echoes++
			case protocol.TypeError:
				var e protocol.ErrorMsg
				_ = protocol.Unmarshal(f.Payload, &e)
				limited = e.Code == protocol.CodeRateLimited
			}
		}
		return echoes, limited
	}
	if n, limited := burst(30); limited || n != 30 {
		t.Fatalf("30 frames at once under rate_burst 50: %d echoed, 429 %v", n, limited)
	}
	reload("sighup", map[string]string{"rate_burst": "5"})
	if _, limited := burst(100); !limited {
		t.Fatal("100 frames at once under rate_burst 5: no 429")
	}
	reload("sighup", map[string]string{"rate_burst": "50"})

	// accept_rate, accept_burst: the bucket keeps at most the new burst of
	// tokens and refills at 1 per 1000 s, so of three new connections at
	// least two are refused.
	reload("ctl", map[string]string{"accept_rate": "0.001", "accept_burst": "1"})
	refused := 0
	for i := range 3 {
		c, err := client.Dial(ctx, client.Config{Addr: gw.Addr, ID: fmt.Sprintf("late-%d", i), DisableReconnect: true})
		switch {
		case errors.Is(err, &client.Error{Code: protocol.CodeUnavailable}):
			refused++
		case err != nil:
			t.Fatalf("a connection beyond accept_burst: %v, want 503", err)
		default:
			c.Close()
		}
	}
	if refused < 2 {
		t.Fatalf("%d of 3 new connections refused at accept_rate 0.001, accept_burst 1: want at least 2", refused)
	}
	if m := metric(t, gw.Admin, `switchyard_connections_rejected_total{reason="accept_rate"}`); m < 2 {
		t.Fatalf("switchyard_connections_rejected_total{reason=\"accept_rate\"} = %v, want at least 2", m)
	}
	reload("sighup", map[string]string{"accept_rate": "", "accept_burst": ""})

	// handshake_timeout: before is accepted under 10m, after under 300ms.
	accepted := metric(t, gw.Admin, "switchyard_connections_accepted_total")
	before := silentConn(t, gw.Addr)
	poll.Until(t, poll.Patience, func() error { // its handshake deadline is armed at accept
		if metric(t, gw.Admin, "switchyard_connections_accepted_total") == accepted {
			return errors.New("the gateway has not accepted the silent connection yet")
		}
		return nil
	})
	reload("sighup", map[string]string{"handshake_timeout": "300ms"})
	after := silentConn(t, gw.Addr)
	if code := errorThenEOF(t, after); code != protocol.CodeTimeout {
		t.Fatalf("a silent connection after the reload got ERROR %d, want 408", code)
	}
	_ = before.nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := before.nc.Read(make([]byte, 1)); n != 0 || !isTimeout(err) {
		t.Fatalf("a silent connection accepted before the reload (handshake timeout 10m) ended early: %d bytes, %v", n, err)
	}
	before.nc.Close()
	reload("sighup", map[string]string{"handshake_timeout": "10m"})

	// resume_token_ttl and resume_window.
	held := rawWelcome(t, gw.Addr, "held", nil)
	poll.Until(t, poll.Patience, func() error { // detached, so under the 5m window
		if body := adminBody(t, gw.Admin, adminToken, "/api/v1/sessions/held"); !strings.Contains(body, `"attached":false`) {
			return fmt.Errorf("held not detached yet: %s", body)
		}
		return nil
	})
	reload("ctl", map[string]string{"resume_token_ttl": "1h", "resume_window": "1s"})
	brief := rawWelcome(t, gw.Addr, "brief", nil)
	oldExp, newExp := tokenExpiry(t, held.Resume), tokenExpiry(t, brief.Resume)
	if d := oldExp.Sub(newExp); d < 22*time.Hour || time.Until(newExp) > time.Hour {
		t.Fatalf("resume token expiry %v before the reload (ttl 24h), %v after (ttl 1h)", oldExp, newExp)
	}
	sessionsBefore := metric(t, gw.Admin, "switchyard_sessions")
	poll.Until(t, poll.Patience, func() error {
		if code := adminStatus(t, gw.Admin, adminToken, "/api/v1/sessions/brief"); code != http.StatusNotFound {
			return fmt.Errorf("session of brief, detached under resume_window 1s: %d, want 404", code)
		}
		return nil
	})
	if code := adminStatus(t, gw.Admin, adminToken, "/api/v1/sessions/held"); code != http.StatusOK {
		t.Fatalf("session of held, detached under resume_window 5m, is gone (%d) before brief's", code)
	}
	if m := metric(t, gw.Admin, "switchyard_sessions"); m >= sessionsBefore {
		t.Fatalf("switchyard_sessions %v after brief's session expired, %v before", m, sessionsBefore)
	}
	reload("ctl", map[string]string{"resume_token_ttl": "", "resume_window": ""})

	// rate_excess_close: the flooder is rate-limited (429) but stays up
	// under 1h; after the reload it is closed.
	fl := startFlood(t, gw.Addr, "flooder")
	poll.Until(t, poll.Patience, func() error {
		if fl.limited() == 0 {
			return errors.New("the flooder got no ERROR 429")
		}
		return nil
	})
	if fl.ended() {
		t.Fatalf("the flooder was closed under rate_excess_close 1h: %v", fl.why())
	}
	reload("sighup", map[string]string{"rate_excess_close": "300ms"})
	poll.Until(t, poll.Patience, func() error {
		if !fl.ended() {
			return errors.New("the flooder is still connected after rate_excess_close 300ms")
		}
		return nil
	})
	if !strings.Contains(fl.why(), "closing") {
		t.Fatalf("the flooder ended by %q, want ERROR 429 \"... closing\"", fl.why())
	}

	// max_outbound: a device that reads nothing (a 4 KiB receive buffer)
	// asks for 100 echoes of 60 kB, more than the kernel buffers of a
	// loopback connection take (tcp_wmem's 4 MiB at most). Under 16 MiB
	// the gateway queues the rest and the device, reading at last, gets
	// all 100; under 128 KiB it is closed as a slow consumer before it
	// reads. (At the default rate, which lets the 100 frames through.)
	reload("sighup", map[string]string{"rate": "", "rate_burst": "", "rate_excess_close": ""})
	ask := func(id string) (*rawDevice, float64) {
		d := nonReader(t, gw.Addr, id)
		before := metric(t, gw.Admin, `switchyard_disconnects_total{reason="slow_consumer"}`)
		frame := protocol.AppendFrame(nil, protocol.TypeData, 0, 0, make([]byte, 60000))
		for range 100 {
			if _, err := d.nc.Write(frame); err != nil {
				break // closed meanwhile: what it read tells
			}
		}
		return d, before
	}
	patient, _ := ask("patient")
	for i := range 100 {
		if f, err := patient.read(poll.Patience); err != nil || f.Type != protocol.TypeData || len(f.Payload) != 60000 {
			t.Fatalf("echo %d of 100 under max_outbound 16 MiB: %v %d bytes, %v", i+1, f.Type, len(f.Payload), err)
		}
	}
	reload("ctl", map[string]string{"max_outbound": "131072"})
	_, slowBefore := ask("slow")
	poll.Until(t, poll.Patience, func() error {
		if m := metric(t, gw.Admin, `switchyard_disconnects_total{reason="slow_consumer"}`); m <= slowBefore {
			return fmt.Errorf("no slow consumer closed under max_outbound 128 KiB (%v)", m)
		}
		return nil
	})

	// Not one device of the traffic disconnected.
	traffic.stop(t)

	// drain_timeout, go_away_retry, redirects: seen in the drain.
	reload("sighup", map[string]string{"drain_timeout": "1s", "go_away_retry": "700ms", "redirects": "[127.0.0.1:7999]"})
	stubborn := []*rawDevice{rawHello(t, gw.Addr, "stubborn-1"), rawHello(t, gw.Addr, "stubborn-2")}
	stopCtx, cancel := context.WithTimeout(context.Background(), poll.Patience)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- gw.Stop(stopCtx) }()
	for i, d := range stubborn {
		var g protocol.GoAway
		for g.Reason == "" {
			f, err := d.read(poll.Patience)
			if err != nil {
				t.Fatalf("stubborn-%d: waiting for GOAWAY: %v", i+1, err)
			}
			if f.Type == protocol.TypeGoAway {
				if err := protocol.Unmarshal(f.Payload, &g); err != nil {
					t.Fatal(err)
				}
			}
		}
		if g.RetryMS != 700 || !slices.Equal(g.Redirect, []string{"127.0.0.1:7999"}) {
			t.Errorf("stubborn-%d: GOAWAY %+v, want retry_ms 700 (go_away_retry) and redirect [127.0.0.1:7999]", i+1, g)
		}
	}
	if err := <-stopped; stopCtx.Err() != nil {
		t.Fatalf("the gateway did not exit at drain_timeout 1s: %v", err)
	}
}

// yamlOf is a configuration file of top-level keys, sorted.
func yamlOf(keys map[string]string) string {
	var b strings.Builder
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(&b, "%s: %s\n", k, keys[k])
	}
	return b.String()
}

// reloadLine is the gateway's log line of a successful reload.
var reloadLine = regexp.MustCompile(`msg="configuration reloaded"[^\n]* changed="?\[([^\]]*)\]"? restart_required="?\[([^\]]*)\]"?`)

// sighupReload sends SIGHUP to pr, waits for its next reload line and
// returns what the line reports.
func sighupReload(t *testing.T, pr *Proc) server.ReloadReport {
	t.Helper()
	n := len(reloadLine.FindAllString(pr.Log(), -1))
	if err := pr.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var rep server.ReloadReport
	poll.Until(t, poll.Patience, func() error {
		m := reloadLine.FindAllStringSubmatch(pr.Log(), -1)
		if len(m) <= n {
			return fmt.Errorf("%s: no reload logged after SIGHUP:\n%s", pr.Name, tail(pr.Log(), 5))
		}
		rep = server.ReloadReport{Changed: strings.Fields(m[n][1]), RestartRequired: strings.Fields(m[n][2])}
		return nil
	})
	return rep
}

// metric is the value of the gateway's metric line name (0 when absent).
func metric(t *testing.T, admin, name string) float64 {
	t.Helper()
	body := adminBody(t, admin, adminToken, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %q", name, line)
			}
			return f
		}
	}
	return 0
}

// adminStatus is the status of GET path on the admin listener.
func adminStatus(t *testing.T, admin, token, path string) int {
	t.Helper()
	code, _ := adminGetAuth(t, admin, token, path)
	return code
}

// adminBody is the body of GET path, which must answer 200.
func adminBody(t *testing.T, admin, token, path string) string {
	t.Helper()
	code, body := adminGetAuth(t, admin, token, path)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	return body
}

func adminGetAuth(t *testing.T, admin, token, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// silentConn is a TCP connection to addr that sends nothing.
func silentConn(t *testing.T, addr string) *rawDevice {
	t.Helper()
	d, err := dialRaw(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.nc.Close() })
	return d
}

// errorThenEOF reads d until the gateway closes it and returns the code
// of the ERROR it got first (0: none).
func errorThenEOF(t *testing.T, d *rawDevice) int {
	t.Helper()
	code := 0
	for {
		f, err := d.read(poll.Patience)
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return code
		}
		if err != nil {
			t.Fatalf("waiting for the gateway to close the connection: %v", err)
		}
		if f.Type == protocol.TypeError && code == 0 {
			var e protocol.ErrorMsg
			_ = protocol.Unmarshal(f.Payload, &e)
			code = e.Code
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// tokenExpiry is the expiry in a resume token: | 1 version | 16 session |
// 8 expiry, unix seconds, big endian | 16 MAC | (docs/protocol.md).
func tokenExpiry(t *testing.T, tok []byte) time.Time {
	t.Helper()
	if len(tok) != 41 || tok[0] != 1 {
		t.Fatalf("resume token of %d bytes, version %v: not the documented layout", len(tok), tok[:min(1, len(tok))])
	}
	return time.Unix(int64(byteorder.BigEndian.Uint64(tok[17:25])), 0)
}

// flood is a raw device sending unreliable DATA far above its rate limit
// (about 1,000 frames/s, in batches) and reading what comes back, until
// the gateway closes it.
type flood struct {
	d        *rawDevice
	mu       sync.Mutex
	n429     int
	last     string // the last ERROR's message
	done     bool
	stopping chan struct{}
}

func startFlood(t *testing.T, addr, id string) *flood {
	t.Helper()
	fl := &flood{d: rawHello(t, addr, id), stopping: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() { close(fl.stopping); fl.d.nc.Close(); wg.Wait() })
	batch := make([]byte, 0, 10*16)
	for range 10 {
		batch = protocol.AppendFrame(batch, protocol.TypeData, 0, 0, []byte("flood"))
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			if _, err := fl.d.nc.Write(batch); err != nil {
				return
			}
			select {
			case <-fl.stopping:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			f, err := fl.d.read(time.Hour)
			if err != nil {
				fl.mu.Lock()
				fl.done = true
				fl.mu.Unlock()
				return
			}
			if f.Type != protocol.TypeError {
				continue
			}
			var e protocol.ErrorMsg
			_ = protocol.Unmarshal(f.Payload, &e)
			fl.mu.Lock()
			if e.Code == protocol.CodeRateLimited {
				fl.n429++
			}
			fl.last = fmt.Sprintf("%d %s", e.Code, e.Message)
			fl.mu.Unlock()
		}
	}()
	return fl
}

// limited is the number of ERROR 429 the flooder got.
func (fl *flood) limited() int {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.n429
}

// ended reports whether the gateway closed the flooder.
func (fl *flood) ended() bool {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.done
}

// why is the last ERROR the flooder got.
func (fl *flood) why() string {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.last
}

// nonReader is a device that handshakes and then reads nothing until told:
// its socket's receive buffer is 4 KiB, so what the gateway sends it
// queues on the gateway's side.
func nonReader(t *testing.T, addr, id string) *rawDevice {
	t.Helper()
	dl := net.Dialer{Timeout: poll.Patience, Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		_ = c.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return err
	}}
	nc, err := dl.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	d := &rawDevice{nc}
	d.hello(t, id)
	return d
}

// configured is a cluster of processes whose gateways run with --config
// conf and the admin token of tokenFile.
type configured struct {
	*Procs
	ctx            context.Context
	bin, tokenFile string
	conf           string
}

// configuredProcs writes the gateways' configuration file, starts the
// cluster with it and the admin token, and waits until it converged.
func configuredProcs(t *testing.T, opts Options, yaml string, within time.Duration) configured {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process: skipped under -short")
	}
	c := configured{bin: Binary(t), tokenFile: writeToken(t, adminToken), conf: filepath.Join(t.TempDir(), "gateway.yaml")}
	writeFile(t, c.conf, yaml)
	opts.GatewayFlags = append(append([]string{"--config", c.conf}, tokenFlags(t, c.bin, c.tokenFile)...), opts.GatewayFlags...)
	c.Procs, c.ctx = convergedProcs(t, opts, within)
	return c
}
