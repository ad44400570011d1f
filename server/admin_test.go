package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/switchyard-gw/switchyard/protocol"
)

// adminCall sends one request to g's admin listener, with token as the
// bearer token when not empty, and returns the answer with its body.
func adminCall(t *testing.T, g *Gateway, method, path, token, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+g.AdminAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// api calls the admin API of g with token; it returns the status and the
// body, and checks that the body is JSON.
func api(t *testing.T, g *Gateway, method, path, token, body string) (int, string) {
	t.Helper()
	resp, b := adminCall(t, g, method, path, token, body)
	if !json.Valid([]byte(b)) || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%s %s: %d %q (%s) is not JSON", method, path, resp.StatusCode, b, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, b
}

// connected is a device that finished its handshake with g.
func connected(t *testing.T, g *Gateway, id string) *dev {
	t.Helper()
	d := dial(t, g)
	d.hello(protocol.Hello{ID: id})
	return d
}

// A request without the token, or with a wrong one, is 401 with a JSON
// error on every API route, and changes nothing.
func TestAdminUnauthorized(t *testing.T) {
	g := startGateway(t, Config{AdminToken: "s3cret"})
	d := connected(t, g, "dev")
	routes := []struct{ method, path string }{
		{"GET", "/api/v1/info"}, {"GET", "/api/v1/sessions"}, {"GET", "/api/v1/sessions/dev"},
		{"POST", "/api/v1/sessions/dev/kick"}, {"POST", "/api/v1/drain"}, {"POST", "/api/v1/shards/s1/drain"},
		{"GET", "/api/v1/cluster/members"}, {"GET", "/api/v1/cluster/ring"}, {"GET", "/api/v1/nothing"},
	}
	for _, rt := range routes {
		for _, token := range []string{"", "wrong"} {
			code, body := api(t, g, rt.method, rt.path, token, "")
			if code != http.StatusUnauthorized || !strings.Contains(body, `"error":"missing or wrong bearer token"`) {
				t.Errorf("%s %s token %q: %d %s", rt.method, rt.path, token, code, body)
			}
		}
	}
	select {
	case <-g.DrainRequested():
		t.Fatal("an unauthorized drain was taken")
	default:
	}
	d.send(protocol.TypeData, 0, 0, []byte("still here"))
	if f := d.read(); f.Type != protocol.TypeData {
		t.Fatalf("after unauthorized kicks: %v %s", f.Type, errText(f))
	}
	if n := metric(g, "switchyard_admin_kicks_total"); n != 0 {
		t.Fatalf("kicks counted: %v", n)
	}
}

func TestAdminMethodNotAllowed(t *testing.T) {
	g := startGateway(t, Config{})
	for _, tc := range []struct{ method, path, allow string }{
		{"POST", "/api/v1/info", "GET"},
		{"DELETE", "/api/v1/sessions", "GET"},
		{"GET", "/api/v1/sessions/dev/kick", "POST"},
		{"GET", "/api/v1/drain", "POST"},
		{"PUT", "/api/v1/shards/s1/drain", "POST"},
	} {
		code, body := api(t, g, tc.method, tc.path, "", "")
		if code != http.StatusMethodNotAllowed || !strings.Contains(body, "allowed: "+tc.allow) {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, code, body)
		}
	}
	if code, body := api(t, g, "GET", "/api/v1/nothing", "", ""); code != http.StatusNotFound {
		t.Errorf("unknown path: %d %s", code, body)
	}
	select {
	case <-g.DrainRequested():
		t.Fatal("GET /api/v1/drain drained")
	default:
	}
}

func TestAdminInfo(t *testing.T) {
	g := startGateway(t, Config{Node: "gw-info", Version: "1.2.3", Commit: "abc123", ConfigHash: "sha256:feed"})
	connected(t, g, "dev")
	code, body := api(t, g, "GET", "/api/v1/info", "", "")
	var info NodeInfo
	if err := json.Unmarshal([]byte(body), &info); err != nil || code != 200 {
		t.Fatalf("info: %d %s %v", code, body, err)
	}
	if info.Name != "gw-info" || info.Role != "gateway" || info.Version != "1.2.3" || info.Commit != "abc123" ||
		info.ConfigHash != "sha256:feed" || info.Listen != g.Addr().String() || info.Admin != g.AdminAddr() ||
		!info.Ready || info.Draining || info.Sessions != 1 || info.GoVersion == "" || info.StartedAt.IsZero() {
		t.Fatalf("info: %+v", info)
	}
}

// The session list pages through every session once, in device order.
func TestAdminSessionsPaged(t *testing.T) {
	g := startGateway(t, Config{})
	var want []string
	for i := range 7 {
		id := fmt.Sprintf("dev-%02d", 6-i) // connected out of order
		connected(t, g, id)
		want = append([]string{id}, want...)
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 4 {
			t.Fatalf("too many pages: %v", got)
		}
		code, body := api(t, g, "GET", "/api/v1/sessions?limit=3&after="+after, "", "")
		var p SessionPage
		if err := json.Unmarshal([]byte(body), &p); err != nil || code != 200 {
			t.Fatalf("page: %d %s", code, body)
		}
		for _, s := range p.Sessions {
			if !s.Attached || s.Remote == "" {
				t.Fatalf("session %+v", s)
			}
			got = append(got, s.Device)
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pages gave %v, want %v", got, want)
	}
	for _, bad := range []string{"0", "-1", "x", "1001"} {
		if code, body := api(t, g, "GET", "/api/v1/sessions?limit="+bad, "", ""); code != 400 {
			t.Errorf("limit %s: %d %s", bad, code, body)
		}
	}
	if code, body := api(t, g, "GET", "/api/v1/sessions/dev-03", "", ""); code != 200 || !strings.Contains(body, `"device":"dev-03"`) {
		t.Fatalf("lookup: %d %s", code, body)
	}
	if code, body := api(t, g, "GET", "/api/v1/sessions/nobody", "", ""); code != 404 || !strings.Contains(body, `"error"`) {
		t.Fatalf("lookup of nobody: %d %s", code, body)
	}
}

// A kicked device gets ERROR (409 by default, or the code asked) and is
// closed; the kick is counted.
func TestAdminKick(t *testing.T) {
	g := startGateway(t, Config{AdminToken: "s3cret"})
	d := connected(t, g, "dev")
	code, body := api(t, g, "POST", "/api/v1/sessions/dev/kick", "s3cret", `{"reason":"maintenance"}`)
	if code != 200 || !strings.Contains(body, `"code":409`) {
		t.Fatalf("kick: %d %s", code, body)
	}
	d.expectError(protocol.CodeConflict, true)
	if n := metric(g, "switchyard_admin_kicks_total"); n != 1 {
		t.Fatalf("switchyard_admin_kicks_total = %v", n)
	}
	if code, body := api(t, g, "POST", "/api/v1/sessions/dev/kick", "s3cret", ""); code != 404 {
		t.Fatalf("kick of a closed device: %d %s", code, body)
	}

	d2 := connected(t, g, "dev2")
	if code, body := api(t, g, "POST", "/api/v1/sessions/dev2/kick", "s3cret", `{"code":503}`); code != 200 {
		t.Fatalf("kick 503: %d %s", code, body)
	}
	d2.expectError(protocol.CodeUnavailable, true)
	for _, bad := range []string{`{"code":200}`, `{"what":1}`, `not json`} {
		if code, body := api(t, g, "POST", "/api/v1/sessions/dev/kick", "s3cret", bad); code != 400 {
			t.Errorf("kick with %s: %d %s", bad, code, body)
		}
	}
}

// POST /api/v1/drain tells the gateway's owner (DrainRequested), once.
func TestAdminDrain(t *testing.T) {
	g := startGateway(t, Config{})
	for range 2 {
		if code, body := api(t, g, "POST", "/api/v1/drain", "", ""); code != http.StatusAccepted {
			t.Fatalf("drain: %d %s", code, body)
		}
	}
	select {
	case <-g.DrainRequested(): // closed before the answer
	default:
		t.Fatal("DrainRequested not closed")
	}
	// Without a cluster there is no shard to drain.
	if code, body := api(t, g, "POST", "/api/v1/shards/s1/drain", "", ""); code != http.StatusConflict {
		t.Fatalf("shard drain without a cluster: %d %s", code, body)
	}
}

// /readyz of a clustered gateway: 503 until a shard is in its ring; a
// shard drain reaches the shard's member as cluster.DrainRequest.
func TestReadyzAndShardDrainClustered(t *testing.T) {
	g := startGateway(t, Config{Node: "gw-ready", LinkKeys: [][]byte{fakeShardKey},
		Cluster: &ClusterConfig{Name: "gw-ready", Bind: "127.0.0.1:0", Keys: [][]byte{testGossipKey}, Timing: cluster.FastTiming()}})
	code, body := api(t, g, "GET", "/readyz", "", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "no backend shard in the ring") {
		t.Fatalf("readyz without shards: %d %s", code, body)
	}
	if code, _ := api(t, g, "POST", "/api/v1/shards/s1/drain", "", ""); code != http.StatusNotFound {
		t.Fatalf("drain of an unknown shard: %d", code)
	}
	s := startFakeShard(t, "s1", false)
	n, err := cluster.New(cluster.Config{Name: "be-s1", Bind: "127.0.0.1:0", Keys: [][]byte{testGossipKey}, Seeds: []string{g.GossipAddr()},
		Timing: cluster.FastTiming(), Meta: cluster.Meta{Role: cluster.RoleBackend, Shard: "s1", Link: s.addr(), State: cluster.StateActive,
			Labels: map[string]string{"version": "2.1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer n.Close(t.Context())
	waitFor(t, "readyz 200", func() bool { c, _ := api(t, g, "GET", "/readyz", "", ""); return c == 200 })

	code, body = api(t, g, "GET", "/api/v1/cluster/ring", "", "")
	var ring RingInfo
	if err := json.Unmarshal([]byte(body), &ring); err != nil || code != 200 {
		t.Fatalf("ring: %d %s", code, body)
	}
	if len(ring.Fingerprint) != 16 || fmt.Sprint(ring.Shards) != "[s1]" || len(ring.Members) != 1 ||
		ring.Members[0].Labels["version"] != "2.1" || ring.Members[0].State != "active" || !ring.Members[0].InRing {
		t.Fatalf("ring: %s", body)
	}
	if code, body := api(t, g, "GET", "/api/v1/cluster/members", "", ""); code != 200 || !strings.Contains(body, `"shard":"s1"`) {
		t.Fatalf("members: %d %s", code, body)
	}

	if code, body := api(t, g, "POST", "/api/v1/shards/s1/drain", "", ""); code != http.StatusAccepted || !strings.Contains(body, `"member":"be-s1"`) {
		t.Fatalf("shard drain: %d %s", code, body)
	}
	select {
	case m := <-n.Messages():
		if !bytes.Equal(m.Payload, cluster.DrainRequest) || m.From != "gw-ready" {
			t.Fatalf("the shard got %q from %s", m.Payload, m.From)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the shard got no drain request")
	}

	g.draining.Store(true)
	if code, body := api(t, g, "GET", "/readyz", "", ""); code != 503 || !strings.Contains(body, "draining") {
		t.Fatalf("readyz while draining: %d %s", code, body)
	}
}
