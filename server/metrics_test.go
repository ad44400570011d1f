package server

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
)

// waitMetric polls until g's series has the value want.
func waitMetric(t *testing.T, g *Gateway, series string, want float64) {
	t.Helper()
	poll.Until(t, 20*time.Second, func() error {
		if got := metric(g, series); got != want {
			return fmt.Errorf("%s = %v, want %v", series, got, want)
		}
		return nil
	})
}

// buckets returns the cumulative counts of histogram name by upper bound.
func buckets(t *testing.T, g *Gateway, name string) map[float64]float64 {
	t.Helper()
	var b bytes.Buffer
	g.metrics.set.WritePrometheus(&b)
	out := map[float64]float64{}
	prefix := name + `_bucket{le="`
	for line := range strings.Lines(b.String()) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), prefix)
		if !ok {
			continue
		}
		le, value, _ := strings.Cut(rest, `"} `)
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		bound := 1e300 // +Inf
		if le != "+Inf" {
			if bound, err = strconv.ParseFloat(le, 64); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
		}
		out[bound] = v
	}
	return out
}

// TestHandshakeMetrics: a handshake is counted by its result (ok,
// resumed, a refusal's code) and lands in a bucket of the 50 µs … 5 s
// histogram no higher than the time the device saw it take; the
// connection and its session move through their states; frames are
// counted by type, a gap by its drop reason.
func TestHandshakeMetrics(t *testing.T) {
	g := startGateway(t, Config{Node: "gw-m", Version: "9.9.9", Commit: "c0ffee"})
	if metric(g, `switchyard_build_info{version="9.9.9",commit="c0ffee",goversion="`+runtime.Version()+`"}`) != 1 {
		t.Fatal("no switchyard_build_info")
	}
	if metric(g, "switchyard_fd_limit") < 1 {
		t.Fatal("no switchyard_fd_limit")
	}
	b := buckets(t, g, "switchyard_handshake_duration_seconds")
	if b[5e-5] != 0 || b[5] != 0 || len(b) != len(handshakeBuckets)+1 {
		t.Fatalf("handshake buckets %v: want 50 µs … 5 s", b)
	}

	began := time.Now()
	d := dial(t, g)
	waitMetric(t, g, `switchyard_connections_by_state{state="handshake"}`, 1)
	w := d.hello(protocol.Hello{ID: "dev-m"})
	took := time.Since(began).Seconds()
	waitMetric(t, g, `switchyard_handshake_results_total{result="ok"}`, 1)
	for bound, n := range buckets(t, g, "switchyard_handshake_duration_seconds") {
		if bound >= took && n != 1 {
			t.Fatalf("bucket le=%g holds %v handshakes; the device saw it take %gs", bound, n, took)
		}
	}
	if s := metric(g, "switchyard_handshake_duration_seconds_sum"); s <= 0 || s > took {
		t.Fatalf("handshake took %gs by the histogram, %gs as the device saw it", s, took)
	}
	waitMetric(t, g, `switchyard_connections_by_state{state="ready"}`, 1)
	waitMetric(t, g, `switchyard_connections_by_state{state="handshake"}`, 0)
	waitMetric(t, g, `switchyard_sessions_by_state{state="attached"}`, 1)
	waitMetric(t, g, `switchyard_frames_received_total{type="HELLO"}`, 1)
	waitMetric(t, g, `switchyard_frames_sent_total{type="WELCOME"}`, 1)

	d.send(protocol.TypeData, protocol.FlagAckRequested, 3, []byte("early")) // seq 1 expected: a gap
	d.send(protocol.TypeData, 0, 0, []byte("x"))
	if f := d.read(); f.Type != protocol.TypeData {
		t.Fatalf("want the echo, got %v", f.Type)
	}
	waitMetric(t, g, `switchyard_frames_dropped_total{reason="gap"}`, 1)
	waitMetric(t, g, `switchyard_frames_received_total{type="DATA"}`, 2)
	waitMetric(t, g, `switchyard_frames_sent_total{type="DATA"}`, 1)
	if metric(g, "switchyard_batch_frames_count") < 1 || metric(g, "switchyard_batch_handle_seconds_count") < 1 {
		t.Fatal("no batch counted")
	}

	d.nc.Close()
	waitMetric(t, g, `switchyard_sessions_by_state{state="detached"}`, 1)
	waitMetric(t, g, `switchyard_sessions_by_state{state="attached"}`, 0)
	waitMetric(t, g, `switchyard_connections_by_state{state="ready"}`, 0)

	d = dial(t, g)
	if w2 := d.hello(protocol.Hello{ID: "dev-m", Resume: w.Resume}); !w2.Resumed {
		t.Fatal("not resumed")
	}
	waitMetric(t, g, `switchyard_handshake_results_total{result="resumed"}`, 1)
	waitMetric(t, g, `switchyard_sessions_by_state{state="detached"}`, 0)
	waitMetric(t, g, `switchyard_sessions_by_state{state="attached"}`, 1)
	d.send(protocol.TypeWelcome, 0, 0, nil) // only a gateway sends WELCOME
	d.expectError(protocol.CodeBadRequest, true)
	waitMetric(t, g, `switchyard_frames_received_total{type="OTHER"}`, 1)
	if metric(g, `switchyard_frames_received_total{type="WELCOME"}`) != -1 || metric(g, `switchyard_frames_sent_total{type="HELLO"}`) != -1 {
		t.Fatal("series for a direction a frame type does not travel in")
	}

	bad := dial(t, g)
	bad.send(protocol.TypeHello, 0, 0, []byte{0xc1}) // not msgpack
	bad.expectError(protocol.CodeBadRequest, true)
	waitMetric(t, g, `switchyard_handshake_results_total{result="400"}`, 1)
	waitMetric(t, g, `switchyard_handshake_results_total{result="ok"}`, 1)
	waitMetric(t, g, `switchyard_connections_by_state{state="handshake"}`, 0)
}

// TestShardLinkMetrics: per shard, the links up, the queue and the
// circuit state are gauges; when every link to the shard fails, its
// circuit leaves "closed" and the shard is down.
func TestShardLinkMetrics(t *testing.T) {
	s := startFakeShard(t, "s1", false)
	g := startGateway(t, Config{Backends: s.dir(), LinkKeys: [][]byte{fakeShardKey}, LinkTimeout: 3 * time.Second})
	g.ConnectShards(map[string]string{"s1": s.addr()})
	waitMetric(t, g, `switchyard_shard_links_up{shard="s1"}`, DefaultLinksPerShard)
	waitMetric(t, g, `switchyard_shard_circuit_state{shard="s1",state="closed"}`, 1)
	waitMetric(t, g, `switchyard_shard_circuit_state{shard="s1",state="open"}`, 0)
	waitMetric(t, g, `switchyard_shard_down{shard="s1"}`, 0)
	if metric(g, `switchyard_link_queue_bytes{shard="s1"}`) < 0 {
		t.Fatal("no switchyard_link_queue_bytes for s1")
	}

	s.close() // every link fails
	waitMetric(t, g, `switchyard_shard_links_up{shard="s1"}`, 0)
	waitMetric(t, g, `switchyard_shard_circuit_state{shard="s1",state="closed"}`, 0)
	waitMetric(t, g, `switchyard_shard_down{shard="s1"}`, 1)
	poll.Until(t, 20*time.Second, func() error {
		open := metric(g, `switchyard_shard_circuit_state{shard="s1",state="open"}`)
		half := metric(g, `switchyard_shard_circuit_state{shard="s1",state="half-open"}`)
		if open+half != 1 {
			return fmt.Errorf("circuit open %v, half-open %v", open, half)
		}
		return nil
	})
}

// TestClusterMetrics: a gateway in a cluster exposes the members by role
// and state, its ring's size and fingerprint, and follows a shard leaving.
func TestClusterMetrics(t *testing.T) {
	s := startFakeShard(t, "s1", false)
	be := gossipShard(t, "s1", s.addr())
	g := startGateway(t, Config{Node: "gw-cm", LinkKeys: [][]byte{fakeShardKey},
		Cluster: &ClusterConfig{Name: "gw-cm", Bind: "127.0.0.1:0", Seeds: []string{be.Addr()},
			Keys: [][]byte{testGossipKey}, Timing: cluster.FastTiming()}})
	waitMetric(t, g, "switchyard_ring_shards", 1)
	waitMetric(t, g, `switchyard_cluster_members{role="backend",state="active"}`, 1)
	waitMetric(t, g, `switchyard_cluster_members{role="gateway",state="active"}`, 1)
	waitMetric(t, g, `switchyard_cluster_members{role="backend",state="gone"}`, 0)
	fp := fmt.Sprintf(`switchyard_ring_info{fingerprint="%016x"}`, g.ring.Ring().Fingerprint())
	waitMetric(t, g, fp, 1)

	waitMetric(t, g, `switchyard_shard_circuit_state{shard="s1",state="closed"}`, 1)
	_ = be.Leave(context.Background())
	waitMetric(t, g, "switchyard_ring_shards", 0)
	waitMetric(t, g, `switchyard_cluster_members{role="backend",state="active"}`, 0)
	if metric(g, fp) != -1 {
		t.Fatal("the old ring's fingerprint is still exposed")
	}
	// A shard that left is forgotten: no circuit state (its links' end
	// trips the circuit, which would read "open" for good).
	poll.Until(t, poll.Patience, func() error {
		for _, st := range []string{"closed", "open", "half-open"} {
			if v := metric(g, `switchyard_shard_circuit_state{shard="s1",state="`+st+`"}`); v != -1 {
				return fmt.Errorf("circuit state %s of the shard that left still exposed: %v", st, v)
			}
		}
		return nil
	})
}

// TestErrorCodeOther: a shard that refuses a session with a code the
// protocol does not name (a handler's 403) is counted under "other",
// as an ERROR sent and as the handshake's result.
func TestErrorCodeOther(t *testing.T) {
	s := startFakeShard(t, "s1", false)
	g := startGateway(t, Config{Backends: s.dir(), LinkKeys: [][]byte{fakeShardKey}})
	d := dial(t, g)
	hello, _ := protocol.EncodeHello(&protocol.Hello{V: 1, ID: "dev"})
	d.send(protocol.TypeHello, 0, 0, hello)
	open := s.next(t, protocol.LinkOpen)
	ext, _ := protocol.EncodeLinkExt(&protocol.LinkExt{Code: 403, Reason: "forbidden"})
	open.l.send(&protocol.Envelope{Kind: protocol.LinkRefused, Session: open.e.Session, Epoch: open.e.Epoch, Ext: ext})
	d.expectError(403, true)
	waitMetric(t, g, `switchyard_errors_sent_total{code="other"}`, 1)
	waitMetric(t, g, `switchyard_handshake_results_total{result="other"}`, 1)
	waitMetric(t, g, `switchyard_connections_by_state{state="opening"}`, 0)
}

// TestStaleDownCounted: a Down from a shard for an epoch that is not the
// session's binding is dropped and counted as stale; the binding's own
// reaches the device.
func TestStaleDownCounted(t *testing.T) {
	s := startFakeShard(t, "s1", false)
	g := startGateway(t, Config{Backends: s.dir(), LinkKeys: [][]byte{fakeShardKey}})
	d, open := openOn(t, g, s, "dev")
	open.l.send(&protocol.Envelope{Kind: protocol.LinkDown, Session: open.e.Session, Epoch: 7, Payload: []byte("old")})
	waitMetric(t, g, `switchyard_frames_dropped_total{reason="stale"}`, 1)
	open.l.send(&protocol.Envelope{Kind: protocol.LinkDown, Session: open.e.Session, Epoch: 1, Payload: []byte("new")})
	if f := d.read(); f.Type != protocol.TypeData || string(f.Payload) != "new" {
		t.Fatalf("got %v %q, want DATA new", f.Type, f.Payload)
	}
}
