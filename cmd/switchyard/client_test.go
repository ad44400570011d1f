package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/client/clienttest"
	"github.com/switchyard-gw/switchyard/protocol"
)

// checkLeaks fails t if goroutines started during t outlive its cleanups
// (goleak.VerifyTestMain would also see the tests of other commands).
func checkLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// runClientFor runs runClient with args and stdin, bounded by a deadline,
// and returns its stdout.
func runClientFor(t *testing.T, args []string, stdin io.Reader) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := runClient(ctx, args, stdin, &out)
	if ctx.Err() != nil {
		t.Fatalf("runClient did not end by itself: %v", err)
	}
	return out.String(), err
}

func TestRunClientEcho(t *testing.T) {
	checkLeaks(t)
	tests := []struct {
		name string
		args []string
	}{
		{"reliable", nil},
		{"best effort", []string{"--reliable=false"}},
		{"tags", []string{"--tag", "ver=1", "--tag", "region=eu"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := clienttest.NewGateway(t, clienttest.Echo)
			args := append([]string{"--addr", g.Addr(), "--id", "cli-test"}, tt.args...)
			out, err := runClientFor(t, args, strings.NewReader("hello\r\nworld\n\nlast"))
			if err != nil {
				t.Fatalf("runClient: %v", err)
			}
			if want := "hello\nworld\n\nlast\n"; out != want {
				t.Fatalf("stdout %q, want %q", out, want)
			}
		})
	}
}

func TestRunClientSecretFile(t *testing.T) {
	checkLeaks(t)
	path := filepath.Join(t.TempDir(), "secrets")
	if err := os.WriteFile(path, []byte("\r\n\nfirst-secret\r\nsecond\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A gateway that only knows the first secret.
	g := clienttest.NewGateway(t, func(c *clienttest.Conn) {
		h, err := c.ReadHello()
		if err != nil {
			return
		}
		if err := protocol.VerifyToken([][]byte{[]byte("first-secret")}, h.ID, h.Token, time.Now()); err != nil {
			_ = c.Error(protocol.CodeUnauthorized, "bad token")
			return
		}
		_ = c.Welcome(protocol.Welcome{Session: "s", HB: 30})
		f, err := c.ReadType(protocol.TypeData)
		if err == nil {
			_ = c.WriteFrame(protocol.TypeData, 0, 0, append([]byte("auth ok: "), f.Payload...))
			_ = c.WriteFrame(protocol.TypeAck, 0, f.Seq, nil)
		}
		_, _ = c.ReadFrame() // until the client leaves
	})
	out, err := runClientFor(t, []string{"--addr", g.Addr(), "--secret-file", path}, strings.NewReader("hi\n"))
	if err != nil || out != "auth ok: hi\n" {
		t.Fatalf("runClient = %q, %v", out, err)
	}

	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("second\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = runClientFor(t, []string{"--addr", g.Addr(), "--secret-file", wrong}, strings.NewReader("hi\n"))
	if !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("wrong secret: %v, want 401", err)
	}
}

func TestRunClientTakenOver(t *testing.T) {
	checkLeaks(t)
	g := clienttest.NewGateway(t, func(c *clienttest.Conn) {
		if _, err := c.ReadHello(); err == nil && c.Welcome(protocol.Welcome{Session: "s", HB: 30}) == nil {
			_ = c.Error(protocol.CodeConflict, "taken over")
		}
	})
	pr, pw := io.Pipe() // stdin that never ends by itself
	t.Cleanup(func() { pw.Close() })
	_, err := runClientFor(t, []string{"--addr", g.Addr()}, pr)
	if !errors.Is(err, client.ErrTakenOver) {
		t.Fatalf("runClient = %v, want 409", err)
	}
}

func TestRunClientInterrupted(t *testing.T) {
	checkLeaks(t)
	g := clienttest.NewGateway(t, clienttest.Echo)
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runClient(ctx, []string{"--addr", g.Addr()}, pr, io.Discard) }()
	if _, err := pw.Write([]byte("x\n")); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runClient after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("runClient ignored cancel")
	}
}

func TestRunClientFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"bad tag", []string{"--tag", "novalue"}},
		{"unknown flag", []string{"--nope"}},
		{"extra argument", []string{"extra"}},
		{"bad id", []string{"--id", "has space"}},
		{"missing secret file", []string{"--secret-file", "/nonexistent/secret"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, _, err := parseClientFlags(tt.args); err == nil {
				t.Fatalf("parseClientFlags(%q) succeeded", tt.args)
			}
		})
	}
	cfg, reliable, _, err := parseClientFlags(nil)
	if err != nil || cfg.Addr != "127.0.0.1:7400" || !reliable || !strings.HasPrefix(cfg.ID, "cli-") {
		t.Fatalf("defaults: %+v reliable %v err %v", cfg, reliable, err)
	}
}
