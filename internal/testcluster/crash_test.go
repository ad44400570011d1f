package testcluster

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
)

// TestProcsShardCrashKeepsSessions: DESIGN.md "shard crash": 2 gateways
// and 3 counter shards from the binary; 16 devices (8 on the victim)
// stream reliable DATA, pipelined, through both gateways; the victim is
// SIGKILLed. Each gateway reopens the victim's sessions on the shard the
// ring names next from their last checkpoint and replays the upstream
// frames after it. From the device side: no device is disconnected or sees
// an error; every reliable frame is ACKed and answered, and the counter
// goes on from where it was — never back to 1, nothing skipped or out of
// order. A count may repeat only for a frame the crashed shard handled
// without its ACK reaching the gateway (docs/guarantees.md "Shard crash";
// the test logs how many).
func TestProcsShardCrashKeepsSessions(t *testing.T) {
	p, ctx := convergedProcs(t, Options{Gateways: 2, Shards: 3, App: "counter"}, 4*poll.Patience)
	const victimIdx = 2
	victim := p.Shard(victimIdx).Name
	ring := p.Ring()
	var on, off []string
	for i := 0; len(on) < 9 || len(off) < 8; i++ {
		id := fmt.Sprintf("crash-%d", i)
		s, _ := ring.Owner(id)
		if s.Name == victim && len(on) < 9 {
			on = append(on, id)
		} else if s.Name != victim && len(off) < 8 {
			off = append(off, id)
		}
	}
	rawID, on := on[8], on[:8]
	addrs := p.Addrs()
	var streams []*stream
	for i, id := range append(on, off...) {
		d := Dial(ctx, t, client.Config{Addr: addrs[i%len(addrs)], ID: id, MaxPending: 16})
		streams = append(streams, &stream{id: id, d: d, sent: make(chan struct{}), repeatOK: true})
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range streams {
		wg.Go(func() { s.send(ctx, stop) })
		wg.Go(func() { s.recv(ctx) })
	}
	// A raw device on the victim streams reliable DATA without waiting
	// and checks that ACKs never go back: the next shard ACKs the frames
	// replayed from the checkpoint again, which the gateway must not pass
	// on ("highest DATA seq received in order").
	raw := rawHello(t, addrs[0], rawID)
	var regress atomic.Value // the first ACK that went back
	var rawAcked atomic.Uint32
	wg.Go(func() {
		for seq := uint32(1); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			for seq > rawAcked.Load()+32 { // a window, as a device has
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
			}
			if _, err := raw.nc.Write(protocol.AppendFrame(nil, protocol.TypeData, protocol.FlagAckRequested, seq, []byte("tick"))); err != nil {
				return // closed at the end; a failure shows as missing ACKs
			}
		}
	})
	wg.Go(func() {
		for {
			f, err := raw.read(poll.Patience)
			select {
			case <-stop:
				return
			default:
			}
			switch {
			case err != nil:
				regress.CompareAndSwap(nil, "read: "+err.Error())
				return
			case f.Type == protocol.TypeAck && f.Seq < rawAcked.Load():
				regress.CompareAndSwap(nil, fmt.Sprintf("ACK %d after ACK %d", f.Seq, rawAcked.Load()))
			case f.Type == protocol.TypeAck:
				rawAcked.Store(f.Seq)
			case f.Type == protocol.TypeData && f.Reliable():
				_, _ = raw.nc.Write(protocol.AppendFrame(nil, protocol.TypeAck, 0, f.Seq, nil))
			}
		}
	})
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
			wg.Wait()
		}
	}()
	progress := progressOf(streams)
	waitUntil(t, "every device has 20 replies before the kill", progress(20))
	p.Kill(victimIdx)
	waitUntil(t, "every device has 20 more replies after the kill", progress(20))
	close(stop)
	stopped = true
	raw.nc.Close()
	wg.Wait()
	if v := regress.Load(); v != nil {
		t.Errorf("raw device on %s: %s", victim, v)
	} else {
		t.Logf("raw device on %s: ACKed through %d, never going back", victim, rawAcked.Load())
	}

	after := Ring(t, p.Active()...)
	repeats := 0
	for _, s := range streams {
		want, _ := after.Owner(s.id) // the ring without the victim
		_, r := s.check(t, want.Name, false)
		repeats += r
	}
	t.Logf("%d devices (%d on %s) answered in order through the crash; %d replies repeated",
		len(streams), len(on), victim, repeats)
	// Every session of the victim reopened elsewhere is a move of cause
	// "crash" on the gateway that held it.
	crashMoves := 0.0
	for i := range 2 {
		crashMoves += seriesValue(t, p.Gateway(i).Admin, `switchyard_session_moves_started_total{cause="crash"}`)
	}
	if crashMoves < float64(len(on)) {
		t.Errorf(`switchyard_session_moves_started_total{cause="crash"}: %v over the gateways, want at least the %d devices of %s`,
			crashMoves, len(on), victim)
	}
	for i := range 2 {
		gw := p.Gateway(i)
		t.Logf("%s: %s", gw.Name, scrape(t, gw.Admin, "switchyard_session_recoveries_total", "switchyard_session_moves_total", "switchyard_checkpoint_"))
		if t.Failed() {
			for _, line := range strings.Split(gw.Log(), "\n") {
				if strings.Contains(line, "move") || strings.Contains(line, "recover") {
					t.Log(line)
				}
			}
		}
	}
}

// seriesValue returns one series' value on a /metrics page (0 when the
// page does not have it).
func seriesValue(t *testing.T, admin, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(scrape(t, admin, series+" "), "; ") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// scrape returns the lines of a gateway's /metrics that start with one of
// prefixes.
func scrape(t *testing.T, admin string, prefixes ...string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) && !strings.HasSuffix(line, " 0") {
				out = append(out, line)
			}
		}
	}
	return strings.Join(out, "; ")
}
