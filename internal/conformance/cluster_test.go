package conformance

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// Modes. Every test that talks to a gateway runs once per mode, as the
// subtests "embedded" and "cluster" of its top-level test (forEachMode):
//
//	embedded  a lone gateway; its sessions live on the embedded echo backend.
//	cluster   a gateway joined by gossip to two echo shards,
//	          `switchyard backend --app echo --shard s1|s2`; every session
//	          lives on a remote shard, reached over a backend link.
//
// The contract is the same in both: PROTOCOL.md describes what a device sees
// at a gateway, wherever its sessions live. A case that cannot apply to one
// mode says why and skips only that mode; a case where the clustered
// gateway departs from PROTOCOL.md is skipped in cluster mode with a
// comment that starts "KNOWN GAP:".
type mode string

const (
	modeEmbedded mode = "embedded"
	modeCluster  mode = "cluster"
)

var modes = []mode{modeEmbedded, modeCluster}

// forEachMode runs test as one subtest per mode.
func forEachMode(t *testing.T, test func(t *testing.T, m mode)) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) { test(t, m) })
	}
}

// Cluster start-up. The ring is filled by gossip a little after the
// processes start, so a cluster is ready only when the gateway's ring
// holds both shards and devices placed on either shard get WELCOME.
const (
	clusterShards   = 2
	clusterTimeout  = 20 * time.Second // gateway ready to cluster ready
	ringLogGrace    = 5 * time.Second  // proceed on probes alone if the ring is never logged
	probeDevices    = 8                // HELLOs per probe round: both shards get some (1 - 2^-7)
	probeRoundPause = 50 * time.Millisecond
)

// ringChanged matches the gateway's log line for a new ring (text log
// format, as tools/demo/demo.sh reads it). It is outside PROTOCOL.md, so the
// harness only uses it to wait longer, never to judge the gateway.
var ringChanged = regexp.MustCompile(`msg="ring changed".* shards=(\d+)`)

// writeClusterKey writes a cluster key file: one line, 32 random bytes in
// base64. Each cluster gets its own key, so clusters of different tests that
// run at the same time never gossip with each other.
func writeClusterKey(t testing.TB) string {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatalf("cluster key: %v", err)
	}
	path := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatalf("write cluster key: %v", err)
	}
	return path
}

// launchShards starts the echo shards s1 (the gossip seed) and s2 (joins
// s1) and returns the gateway's argv extended to join the same cluster.
func (g *gateway) launchShards(gatewayArgs []string, keyFile string) ([]string, error) {
	ports := freePorts(g.t, 1+2*clusterShards) // gateway gossip, then link and gossip per shard
	seed := ports[2]
	for i := range clusterShards {
		argv := []string{"backend", "--app", "echo", "--shard", "s" + strconv.Itoa(i+1),
			"--link", ports[1+2*i], "--admin", "-", "--gossip", ports[2+2*i], "--cluster-key-file", keyFile}
		if i > 0 {
			argv = append(argv, "--join", seed)
		}
		p, err := startProc(g.t, argv)
		if err != nil {
			return nil, err
		}
		g.shards = append(g.shards, p)
	}
	return append(gatewayArgs, "--gossip", ports[0], "--join", seed, "--cluster-key-file", keyFile), nil
}

// waitCluster waits until the gateway's log reports a ring of both shards
// (or ringLogGrace passes without any ring log line) and then until a round
// of probe devices all get WELCOME; ERROR 503 (no shard yet) is retried.
func (g *gateway) waitCluster() error {
	start := time.Now()
	deadline := start.Add(clusterTimeout)
	for shards := -1; shards != clusterShards; {
		if err := g.requireRunning(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the gateway's ring holds %d shards after %v, want %d", shards, clusterTimeout, clusterShards)
		}
		if m := ringChanged.FindAllStringSubmatch(g.out.tail(1<<20), -1); m != nil {
			shards, _ = strconv.Atoi(m[len(m)-1][1])
		} else if time.Since(start) > ringLogGrace {
			g.t.Logf("note: no %q line in the gateway's log; relying on probe HELLOs", ringChanged)
			break
		}
		time.Sleep(pollInterval)
	}
	var last error
	for time.Now().Before(deadline) {
		if err := g.requireRunning(); err != nil {
			return err
		}
		if last = g.probeRound(); last == nil {
			return nil
		}
		if !errors.Is(last, errNoShardYet) {
			return last
		}
		time.Sleep(probeRoundPause)
	}
	return fmt.Errorf("no WELCOME for every probe device within %v: %v", clusterTimeout, last)
}

var errNoShardYet = errors.New("ERROR 503")

// probeRound handshakes probeDevices fresh devices and closes them. An
// ERROR 503 is errNoShardYet; any other answer but WELCOME is an error.
func (g *gateway) probeRound() error {
	for range probeDevices {
		id := newID("probe")
		f := helloFields(id)
		if len(g.opts.authSecrets) > 0 {
			f["token"] = makeToken(g.opts.authSecrets[0], id, time.Now().Add(time.Hour).Unix())
		}
		if err := probeHello(g.addr, f); err != nil {
			return err
		}
	}
	return nil
}

func probeHello(addr string, fields map[string]any) error {
	c, err := net.DialTimeout("tcp", addr, replyTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(replyTimeout))
	if _, err := c.Write(encodeFrame(typeHello, 0, 0, pack(fields))); err != nil {
		return fmt.Errorf("probe HELLO: %w", err)
	}
	f, err := readFrame(c)
	if err != nil {
		return fmt.Errorf("probe HELLO: %w", err)
	}
	if e, err := parseError(f); err == nil && e.code == codeUnavailable {
		return fmt.Errorf("%w %q for probe %v", errNoShardYet, e.message, fields["id"])
	}
	if _, err := parseWelcome(f); err != nil {
		return fmt.Errorf("probe HELLO: %w", err)
	}
	return nil
}
