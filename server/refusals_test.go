package server

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// TestRefusalLogRateLimited: within one second at most the limit of
// refusals is logged; the next second starts with one line saying how
// many were suppressed.
func TestRefusalLogRateLimited(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	r := newRefusalLog(slog.New(slog.NewTextHandler(&buf, nil)), 3, func() time.Time { return now })
	for range 10 {
		r.note(protocol.CodeUnauthorized, "dev-1", "10.0.0.1:5000", "authentication failed")
	}
	if n := strings.Count(buf.String(), "device refused"); n != 3 {
		t.Fatalf("%d lines in the first second, want 3:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "device=dev-1") || !strings.Contains(buf.String(), "remote=10.0.0.1:5000") ||
		!strings.Contains(buf.String(), "code=401") {
		t.Fatalf("line lacks device, remote or code:\n%s", buf.String())
	}
	buf.Reset()
	now = now.Add(time.Second)
	r.note(protocol.CodeConflict, "dev-2", "10.0.0.2:5000", "session taken over")
	if !strings.Contains(buf.String(), "suppressed=7") || strings.Count(buf.String(), "device refused") != 1 {
		t.Fatalf("second second:\n%s", buf.String())
	}
}

// TestRefusedDevicesLogged: a device refused at the handshake (401) and
// one taken over (409) are logged with their device id and address.
func TestRefusedDevicesLogged(t *testing.T) {
	var buf syncBuffer
	g := startGateway(t, Config{AuthSecrets: [][]byte{[]byte("k")},
		Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	d := dial(t, g)
	p, _ := protocol.EncodeHello(&protocol.Hello{V: 1, ID: "intruder", Token: "nope"})
	d.send(protocol.TypeHello, 0, 0, p)
	d.expectError(protocol.CodeUnauthorized, true)
	tok := protocol.MakeToken([]byte("k"), "twin", time.Now().Add(time.Hour))
	first := dial(t, g)
	first.hello(protocol.Hello{ID: "twin", Token: tok})
	dial(t, g).hello(protocol.Hello{ID: "twin", Token: tok})
	first.expectError(protocol.CodeConflict, true)
	waitFor(t, "refusals logged", func() bool {
		s := buf.String()
		return strings.Contains(s, "device=intruder") && strings.Contains(s, "code=401") &&
			strings.Contains(s, "device=twin") && strings.Contains(s, "code=409") &&
			strings.Contains(s, "remote=127.0.0.1:")
	})
}

// syncBuffer is a log sink the gateway's goroutines write while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
