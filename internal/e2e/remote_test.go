package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/switchyard-gw/switchyard/examples/counter"
	"github.com/switchyard-gw/switchyard/examples/echo"
	"github.com/switchyard-gw/switchyard/examples/rooms"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
	"github.com/switchyard-gw/switchyard/router"
	"github.com/switchyard-gw/switchyard/server"
)

var linkKey = []byte("e2e-cluster-key-0123456789abcdef")

// staticDir places every device on one shard.
type staticDir struct{ shard, addr string }

func (d staticDir) Owner(string, map[string]string) (server.Placement, error) {
	return server.Placement{Shard: d.shard, Addr: d.addr}, nil
}

var gossipKey = []byte("gossip-key-0123456789abcdef01234")[:32]

// gossipCfg is a fast-gossip cluster config on a free loopback port.
func gossipCfg(seeds ...string) *cluster.Config {
	return &cluster.Config{Bind: "127.0.0.1:0", Seeds: seeds, Keys: [][]byte{gossipKey}, Timing: cluster.FastTiming()}
}

// shard starts a backend shard; with gossip it joins the cluster.
func shard(t *testing.T, name string, h backend.Handler, gossip *cluster.Config) *backend.Server {
	t.Helper()
	return startShard(t, backend.Config{Shard: name, Link: "127.0.0.1:0", ClusterKeys: [][]byte{linkKey}, Handler: h, Gossip: gossip})
}

// startShard starts a backend shard with cfg until the test ends.
func startShard(t *testing.T, cfg backend.Config) *backend.Server {
	t.Helper()
	s, err := backend.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), poll.Patience)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

func remoteGateway(t *testing.T, s *backend.Server, keys [][]byte) *server.Gateway {
	t.Helper()
	return gateway(t, server.Config{Backends: staticDir{s.Shard(), s.Addr()}, LinkKeys: keys})
}

// TestRemoteEchoThenNewClientElsewhere: reliable DATA echoes through a
// remote shard (ACKed once the shard accepted it), and the same device id
// connecting fresh through another gateway gets a new session there.
func TestRemoteEchoThenNewClientElsewhere(t *testing.T) {
	s := shard(t, "s1", echo.Handler{}, nil)
	g1 := remoteGateway(t, s, [][]byte{linkKey})
	g2 := remoteGateway(t, s, [][]byte{linkKey})
	ctx, cancel := context.WithTimeout(context.Background(), poll.Patience)
	defer cancel()

	c := dial(t, client.Config{Addr: g1.Addr().String(), ID: "roamer"})
	for _, p := range []string{"one", "two", "three"} {
		if err := c.Send(ctx, []byte(p), true); err != nil {
			t.Fatal(err)
		}
		if m, err := c.Recv(ctx); err != nil || string(m.Payload) != p || !m.Reliable {
			t.Fatalf("echo of %q: %+v %v", p, m, err)
		}
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	first := c.Session()
	c.Close()

	// The same device, resumed on the other gateway, continues.
	c2 := dial(t, client.Config{Addr: g2.Addr().String(), ID: "roamer"})
	if c2.Session() == first {
		t.Fatalf("a fresh client cannot know the session")
	}
	if err := c2.Send(ctx, []byte("fresh"), true); err != nil {
		t.Fatal(err)
	}
	if m, err := c2.Recv(ctx); err != nil || string(m.Payload) != "fresh" {
		t.Fatalf("after takeover: %+v %v", m, err)
	}
}

// TestRemoteTakeoverAcrossGateways: a HELLO for a device connected through
// another gateway wins; the shard kicks the old connection with 409.
func TestRemoteTakeoverAcrossGateways(t *testing.T) {
	s := shard(t, "s1", echo.Handler{}, nil)
	g1 := remoteGateway(t, s, [][]byte{linkKey})
	g2 := remoteGateway(t, s, [][]byte{linkKey})
	a := dial(t, client.Config{Addr: g1.Addr().String(), ID: "twin"})
	b := dial(t, client.Config{Addr: g2.Addr().String(), ID: "twin"})
	ctx, cancel := context.WithTimeout(context.Background(), poll.Patience)
	defer cancel()
	if _, err := a.Recv(ctx); !errors.Is(err, client.ErrTakenOver) {
		t.Fatalf("first connection: %v, want 409", err)
	}
	if err := b.Send(ctx, []byte("x"), true); err != nil {
		t.Fatal(err)
	}
	if m, err := b.Recv(ctx); err != nil || string(m.Payload) != "x" {
		t.Fatalf("second connection: %+v %v", m, err)
	}
}

// TestRemoteWrongKey: a gateway with another cluster key cannot open a link,
// and its devices get 503.
func TestRemoteWrongKey(t *testing.T) {
	s := shard(t, "s1", echo.Handler{}, nil)
	g := remoteGateway(t, s, [][]byte{[]byte("another-key-0123456789abcdef0000")})
	ctx, cancel := context.WithTimeout(context.Background(), poll.Patience)
	defer cancel()
	_, err := client.Dial(ctx, client.Config{Addr: g.Addr().String(), ID: "locked-out", DisableReconnect: true})
	if !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("dial through a gateway with the wrong key: %v, want 503", err)
	}
}

// rawDev speaks frames directly, to see resume tokens and sequence numbers.
type rawDev struct {
	t  *testing.T
	nc net.Conn
}

func rawDial(t *testing.T, addr string) *rawDev {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawDev{t: t, nc: nc}
}

func (d *rawDev) send(typ protocol.Type, flags protocol.Flags, seq uint32, p []byte) {
	d.t.Helper()
	if _, err := d.nc.Write(protocol.AppendFrame(nil, typ, flags, seq, p)); err != nil {
		d.t.Fatal(err)
	}
}

func (d *rawDev) read() protocol.Frame {
	d.t.Helper()
	_ = d.nc.SetReadDeadline(time.Now().Add(poll.Patience))
	var hdr [protocol.HeaderSize]byte
	if _, err := io.ReadFull(d.nc, hdr[:]); err != nil {
		d.t.Fatal(err)
	}
	h := protocol.ParseHeader(hdr[:])
	p := make([]byte, h.PayloadLen())
	if _, err := io.ReadFull(d.nc, p); err != nil {
		d.t.Fatal(err)
	}
	return protocol.Frame{Type: h.Type, Flags: h.Flags, Seq: h.Seq, Payload: p}
}

func (d *rawDev) hello(h protocol.Hello) protocol.Welcome {
	d.t.Helper()
	h.V = 1
	p, _ := protocol.EncodeHello(&h)
	d.send(protocol.TypeHello, 0, 0, p)
	f := d.read()
	var w protocol.Welcome
	if f.Type != protocol.TypeWelcome || protocol.Unmarshal(f.Payload, &w) != nil {
		d.t.Fatalf("want WELCOME, got %v %q", f.Type, f.Payload)
	}
	return w
}

// TestRemoteResumeRedeliversAcrossGateways: the shard holds the session, so
// a device that reconnects to another gateway (same cluster key) resumes
// it: same session, WELCOME last = what the shard accepted, and the
// downstream DATA it had not ACKed is delivered again.
func TestRemoteResumeRedeliversAcrossGateways(t *testing.T) {
	s := shard(t, "s1", echo.Handler{}, nil)
	key := []byte("resume-key-0123456789abcdef")
	g1 := gateway(t, server.Config{Backends: staticDir{s.Shard(), s.Addr()}, LinkKeys: [][]byte{linkKey}, ClusterKeys: [][]byte{key}})
	g2 := gateway(t, server.Config{Backends: staticDir{s.Shard(), s.Addr()}, LinkKeys: [][]byte{linkKey}, ClusterKeys: [][]byte{key}})

	a := rawDial(t, g1.Addr().String())
	w1 := a.hello(protocol.Hello{ID: "mover"})
	for seq := uint32(1); seq <= 3; seq++ {
		a.send(protocol.TypeData, protocol.FlagAckRequested, seq, []byte{byte(seq)})
	}
	var acked, echoed uint32
	for acked < 3 || echoed < 3 {
		switch f := a.read(); f.Type {
		case protocol.TypeAck:
			acked = f.Seq
		case protocol.TypeData:
			echoed = f.Seq
		}
	}
	a.send(protocol.TypeAck, 0, 1, nil) // the device keeps echoes 2 and 3 unacknowledged
	time.Sleep(50 * time.Millisecond)   // let the ACK reach the shard before the cut
	a.nc.Close()

	b := rawDial(t, g2.Addr().String())
	w2 := b.hello(protocol.Hello{ID: "mover", Resume: w1.Resume, Last: 1})
	if !w2.Resumed || w2.Session != w1.Session || w2.Last != 3 {
		t.Fatalf("resume on the other gateway: %+v (first %+v)", w2, w1)
	}
	for want := uint32(2); want <= 3; want++ {
		if f := b.read(); f.Type != protocol.TypeData || f.Seq != want || f.Payload[0] != byte(want) {
			t.Fatalf("redelivery: %+v, want seq %d", f, want)
		}
	}
	b.send(protocol.TypeData, protocol.FlagAckRequested, 4, []byte{4})
	var gotAck, gotEcho bool
	for !gotAck || !gotEcho {
		switch f := b.read(); {
		case f.Type == protocol.TypeAck && f.Seq == 4:
			gotAck = true
		case f.Type == protocol.TypeData && f.Seq == 4:
			gotEcho = true
		default:
			t.Fatalf("unexpected %+v", f)
		}
	}
}

// TestRemotePublishReachesEveryGateway: devices on two gateways join a room
// on the rooms app; a message said in the room reaches both.
func TestRemotePublishReachesEveryGateway(t *testing.T) {
	s := shard(t, "s1", rooms.Handler{}, nil)
	g1 := remoteGateway(t, s, [][]byte{linkKey})
	g2 := remoteGateway(t, s, [][]byte{linkKey})
	ctx, cancel := context.WithTimeout(context.Background(), poll.Patience)
	defer cancel()
	a := dial(t, client.Config{Addr: g1.Addr().String(), ID: "alice"})
	b := dial(t, client.Config{Addr: g2.Addr().String(), ID: "bob"})
	for _, c := range []*client.Client{a, b} {
		if err := c.Send(ctx, []byte("join lobby"), true); err != nil {
			t.Fatal(err)
		}
		if err := c.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Both joins are acknowledged, so both subscriptions reached the gateways.
	if err := a.Send(ctx, []byte("say lobby hello all"), true); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*client.Client{"alice": a, "bob": b} {
		for {
			m, err := c.Recv(ctx)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if strings.Contains(string(m.Payload), "hello all") {
				break
			}
		}
	}
}

// TestClusterPushAcrossShards: two shards and a gateway joined by gossip;
// a Push made on the shard that does not own the device is forwarded to
// the one that does and reaches the device.
func TestClusterPushAcrossShards(t *testing.T) {
	a := shard(t, "a", echo.Handler{}, gossipCfg())
	seed := a.GossipAddr()
	b := shard(t, "b", echo.Handler{}, gossipCfg(seed))
	g := gateway(t, server.Config{Cluster: gossipCfg(seed), LinkKeys: [][]byte{linkKey}})
	waitFor(t, "gateway sees both shards", func() bool { return g.Shards() == 2 })
	waitFor(t, "shards see each other", func() bool { return a.RingLen() == 2 && b.RingLen() == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), poll.Patience)
	defer cancel()
	for i := range 8 { // devices on both shards
		id := fmt.Sprint("dev-", i)
		c := dial(t, client.Config{Addr: g.Addr().String(), ID: id})
		owner, other := a, b
		if a.Session(id) == nil {
			owner, other = b, a
		}
		if owner.Session(id) == nil {
			t.Fatalf("%s: no shard holds the session", id)
		}
		if err := other.Push(id, []byte("pushed "+id), true); err != nil {
			t.Fatalf("push %s through the other shard: %v", id, err)
		}
		m, err := c.Recv(ctx)
		if err != nil || string(m.Payload) != "pushed "+id {
			t.Fatalf("%s received %q, %v", id, m.Payload, err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, poll.Patience, func() error {
		if !cond() {
			return errors.New(what)
		}
		return nil
	})
}

// TestClusterPlacementAndEmptyRing: with no shard the gateway answers 503;
// once two counter shards joined, every session lands on the shard the
// ring names for its device id, whichever gateway it comes through (the
// counter app says which shard served it).
func TestClusterPlacementAndEmptyRing(t *testing.T) {
	g1 := gateway(t, server.Config{Cluster: gossipCfg(), LinkKeys: [][]byte{linkKey}})
	ctx, cancel := context.WithTimeout(context.Background(), poll.Patience)
	defer cancel()
	_, err := client.Dial(ctx, client.Config{Addr: g1.Addr().String(), ID: "early", DisableReconnect: true})
	if !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("empty ring: %v, want 503", err)
	}
	seed := g1.GossipAddr()
	g2 := gateway(t, server.Config{Cluster: gossipCfg(seed), LinkKeys: [][]byte{linkKey}})
	for _, name := range []string{"a", "b"} {
		shard(t, name, counter.Handler{}, gossipCfg(seed))
	}
	waitFor(t, "both gateways see both shards", func() bool { return g1.Shards() == 2 && g2.Shards() == 2 })
	ring, err := router.NewRing(router.Config{}, []router.Shard{{Name: "a"}, {Name: "b"}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for i := range 20 {
		id := fmt.Sprint("sensor-", i)
		want, _ := ring.Owner(id)
		for _, g := range []*server.Gateway{g1, g2} {
			c := dial(t, client.Config{Addr: g.Addr().String(), ID: id})
			if err := c.Send(ctx, []byte("tick"), true); err != nil {
				t.Fatal(err)
			}
			m, err := c.Recv(ctx)
			if err != nil {
				t.Fatal(err)
			}
			shard, _, _ := strings.Cut(string(m.Payload), " ")
			if shard != want.Name {
				t.Fatalf("%s served by %q, ring says %q", id, m.Payload, want.Name)
			}
			seen[shard]++
			c.Close()
		}
	}
	if len(seen) != 2 {
		t.Fatalf("20 devices all on one shard: %v", seen)
	}
}

// TestClusterAdminAPI: a clustered gateway lists the members and its ring.
func TestClusterAdminAPI(t *testing.T) {
	g := gateway(t, server.Config{AdminListen: "127.0.0.1:0", Cluster: gossipCfg(), LinkKeys: [][]byte{linkKey}})
	shard(t, "solo", echo.Handler{}, gossipCfg(g.GossipAddr()))
	waitFor(t, "ring has the shard", func() bool { return g.Shards() == 1 })
	get := func(path string) string {
		resp, err := http.Get("http://" + g.AdminAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	if m := get("/api/v1/cluster/members"); !strings.Contains(m, `"shard":"solo"`) || !strings.Contains(m, `"role":"gateway"`) {
		t.Fatalf("members: %s", m)
	}
	if r := get("/api/v1/cluster/ring"); !strings.Contains(r, `"shards":["solo"]`) || !strings.Contains(r, `"solo":4093`) {
		t.Fatalf("ring: %s", r)
	}
	// The gateway keeps DefaultLinksPerShard links to every shard.
	waitFor(t, "two links to the shard", func() bool {
		return strings.Contains(get("/metrics"), "switchyard_backend_links 2\n")
	})
}

// TestRemoteResumeAfterKeyRotation: gateways rotate the resume-token key
// (the new key first, the old one kept). A device whose token the old key
// signed resumes its session through a rotated gateway, not a takeover; a
// gateway that no longer holds the old key starts a fresh session for it.
func TestRemoteResumeAfterKeyRotation(t *testing.T) {
	s := shard(t, "s1", echo.Handler{}, nil)
	oldKey := []byte("resume-key-old-0123456789abcdef")
	newKey := []byte("resume-key-new-0123456789abcdef")
	gw := func(keys ...[]byte) *server.Gateway {
		return gateway(t, server.Config{Backends: staticDir{s.Shard(), s.Addr()}, LinkKeys: [][]byte{linkKey}, ClusterKeys: keys})
	}
	before, rotated, newOnly := gw(oldKey), gw(newKey, oldKey), gw(newKey)

	a := rawDial(t, before.Addr().String())
	w1 := a.hello(protocol.Hello{ID: "rotor"})
	a.nc.Close()
	b := rawDial(t, rotated.Addr().String())
	w2 := b.hello(protocol.Hello{ID: "rotor", Resume: w1.Resume})
	if !w2.Resumed || w2.Session != w1.Session {
		t.Fatalf("old-key token after rotation: %+v, want the session %s resumed", w2, w1.Session)
	}
	b.nc.Close()
	c := rawDial(t, newOnly.Addr().String())
	if w3 := c.hello(protocol.Hello{ID: "rotor", Resume: w1.Resume}); w3.Resumed || w3.Session == w1.Session {
		t.Fatalf("token of a dropped key resumed: %+v", w3)
	}
}
