package backend

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/internal/trace"
	"github.com/vmihailenco/msgpack/v5"
)

// TestTraceShard: the trace message reads as its own kind on the path of
// the forwarded calls (and not as a malformed forward); once applied,
// the worker's events of that device are logged with the trace id and
// payload sizes only, other devices' not at all; a bad trace message is
// counted as malformed.
func TestTraceShard(t *testing.T) {
	msg, err := trace.Encode("dev-t", "tid1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var f forward
	if err := msgpack.Unmarshal(msg, &f); err != nil || f.Kind != trace.Kind {
		t.Fatalf("the trace message decodes as forward %+v, %v", f, err)
	}
	var buf bytes.Buffer // the calls below log on this goroutine
	srv := &Server{log: slog.New(slog.NewTextHandler(&buf, nil)), cfg: Config{Shard: "s9"}}
	srv.startTrace(msg, "gw-member")
	srv.startTrace([]byte{0x81, 0xa1, 'k', 0xa5, 't', 'r', 'a', 'c', 'e'}, "gw-member")
	if n := srv.stats.dropMalformed.Load(); n != 1 {
		t.Fatalf("malformed trace messages counted: %d, want 1", n)
	}
	traced := &Session{srv: srv, device: "dev-t"}
	other := &Session{srv: srv, device: "dev-o"}
	for _, s := range []*Session{traced, other} {
		srv.traceEvent(s, &event{kind: evUp, seq: 7, reliable: true, payload: []byte("SECRET")})
		srv.traceEvent(s, &event{kind: evClose, text: "link lost"})
	}
	log := buf.String()
	for _, want := range []string{`msg="trace: started" trace_id=tid1 device=dev-t`,
		`msg="trace: frame up" trace_id=tid1 device=dev-t session=`, "seq=7 size=6 reliable=true",
		`msg="trace: session closed" trace_id=tid1 device=dev-t`, `reason="link lost"`} {
		if !strings.Contains(log, want) {
			t.Fatalf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "SECRET") || strings.Contains(log, "dev-o") {
		t.Fatalf("payload or untraced device logged:\n%s", log)
	}
}
