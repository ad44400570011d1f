package server

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// TestDisconnectRingBounds: the ring keeps the newest n, answers newest
// first, filters by device and honours the limit.
func TestDisconnectRingBounds(t *testing.T) {
	r := newDisconnectRing(3)
	if got := r.recent("", 10); len(got) != 0 {
		t.Fatalf("empty ring: %v", got)
	}
	for i := range 5 {
		r.add(Disconnect{Device: fmt.Sprint("d", i%2), Reason: fmt.Sprint("r", i)})
	}
	var reasons []string
	for _, d := range r.recent("", 10) {
		reasons = append(reasons, d.Reason)
	}
	if strings.Join(reasons, ",") != "r4,r3,r2" {
		t.Fatalf("ring of 3 after 5: %v", reasons)
	}
	if got := r.recent("d1", 10); len(got) != 1 || got[0].Reason != "r3" {
		t.Fatalf("d1: %v", got)
	}
	if got := r.recent("", 1); len(got) != 1 || got[0].Reason != "r4" {
		t.Fatalf("limit 1: %v", got)
	}
}

// TestTraceGateway: a traced device's HELLO, WELCOME, frame headers and
// close are logged with the trace id, never its payload; an untraced
// device's are not; the close lands in the ring of disconnects with its
// reason, which GET /api/v1/disconnects and /api/v1/devices/{device}
// answer; bad requests get 400.
func TestTraceGateway(t *testing.T) {
	var buf syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", buf.String())
		}
	})
	g := startGateway(t, Config{Node: "gw-trace", Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	code, body := api(t, g, http.MethodPost, "/api/v1/trace", "", `{"device":"traced","for":"1m"}`)
	if code != http.StatusOK {
		t.Fatalf("POST trace: %d %s", code, body)
	}
	var res TraceResult
	if err := json.Unmarshal([]byte(body), &res); err != nil || len(res.ID) != 16 || res.Device != "traced" {
		t.Fatalf("trace result %s (%v)", body, err)
	}
	for _, bad := range []string{`{"device":""}`, `{"device":"x","for":"2h"}`, `{"device":"x","for":"soon"}`} {
		if code, body := api(t, g, http.MethodPost, "/api/v1/trace", "", bad); code != http.StatusBadRequest {
			t.Fatalf("POST trace %s: %d %s", bad, code, body)
		}
	}

	quiet := dial(t, g)
	quiet.hello(protocol.Hello{ID: "untraced"})
	quiet.send(protocol.TypeData, protocol.FlagAckRequested, 1, []byte("quiet-payload"))
	d := dial(t, g)
	d.hello(protocol.Hello{ID: "traced"})
	d.send(protocol.TypeData, protocol.FlagAckRequested, 1, []byte("SECRET-PAYLOAD-BYTES"))
	d.read() // the echo
	d.nc.Close()
	tag := "trace_id=" + res.ID + " device=traced"
	waitFor(t, "the traced device's events logged", func() bool {
		s := buf.String()
		return logHas(s, `msg="trace: HELLO"`, tag) && logHas(s, `msg="trace: WELCOME"`, tag) &&
			logHas(s, `msg="trace: frame in"`, tag, "type=DATA flags=1 seq=1 size=30") &&
			logHas(s, `msg="trace: frame out"`, tag, "type=DATA", "size=30") &&
			logHas(s, `msg="trace: connection closed"`, tag, "reason=peer")
	})
	if s := buf.String(); strings.Contains(s, "SECRET-PAYLOAD") || strings.Contains(s, "untraced") {
		t.Fatalf("payload or untraced device in the log:\n%s", s)
	}

	code, body = api(t, g, http.MethodGet, "/api/v1/disconnects?device=traced", "", "")
	var ds []Disconnect
	if err := json.Unmarshal([]byte(body), &ds); code != http.StatusOK || err != nil || len(ds) != 1 ||
		ds[0].Reason != reasonPeer || ds[0].Gateway != "gw-trace" || !strings.HasPrefix(ds[0].Remote, "127.0.0.1:") ||
		time.Since(ds[0].At) > time.Hour {
		t.Fatalf("disconnects: %d %s (%v)", code, body, err)
	}
	if code, body := api(t, g, http.MethodGet, "/api/v1/disconnects?limit=0", "", ""); code != http.StatusBadRequest {
		t.Fatalf("limit 0: %d %s", code, body)
	}
	code, body = api(t, g, http.MethodGet, "/api/v1/devices/untraced", "", "")
	var loc DeviceLocation
	if err := json.Unmarshal([]byte(body), &loc); code != http.StatusOK || err != nil || loc.Gateway != "gw-trace" ||
		!loc.Attached || loc.LastDisconnect != nil || loc.Since.IsZero() {
		t.Fatalf("device lookup: %d %s (%v)", code, body, err)
	}
	code, body = api(t, g, http.MethodGet, "/api/v1/devices/traced", "", "")
	loc = DeviceLocation{}
	if err := json.Unmarshal([]byte(body), &loc); code != http.StatusOK || err != nil || loc.Attached ||
		loc.LastDisconnect == nil || loc.LastDisconnect.Reason != reasonPeer {
		t.Fatalf("device lookup after its close: %d %s (%v)", code, body, err)
	}
}

// logHas reports whether a line of log holds every part.
func logHas(log string, parts ...string) bool {
	for _, l := range strings.Split(log, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// TestDisconnectRefusedHello: a HELLO refused before any session (401)
// is in the ring under its device id, with the reason it is counted as,
// and traced when its device is.
func TestDisconnectRefusedHello(t *testing.T) {
	var buf syncBuffer
	g := startGateway(t, Config{AuthSecrets: [][]byte{[]byte("k")}, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err := g.trace.Start("intruder", "t1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	d := dial(t, g)
	p, _ := protocol.EncodeHello(&protocol.Hello{V: 1, ID: "intruder", Token: "nope"})
	d.send(protocol.TypeHello, 0, 0, p)
	d.expectError(protocol.CodeUnauthorized, true)
	// The gateway half-closed after the ERROR; the record is made when
	// the connection closes, which the device's own close ends at once.
	d.nc.Close()
	waitFor(t, "the refused device's disconnect record", func() bool { return len(g.disconnects.recent("intruder", 10)) > 0 })
	if got := g.disconnects.recent("intruder", 10); len(got) != 1 || got[0].Reason != reasonAuth {
		t.Fatalf("disconnects of the refused device: %+v", got)
	}
	if s := buf.String(); !logHas(s, `msg="trace: ERROR"`, "trace_id=t1 device=intruder", "code=401") {
		t.Fatalf("refusal not traced:\n%s", s)
	}
}
