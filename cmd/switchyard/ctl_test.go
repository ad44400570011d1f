package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/internal/leakcheck"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/server"
)

// checkGatewayLeaks is checkLeaks for tests that start a gateway: netpoll
// keeps its pollers for the life of the process.
func checkGatewayLeaks(t *testing.T) {
	t.Helper()
	opts := append([]goleak.Option{goleak.IgnoreCurrent()}, leakcheck.Netpoll...)
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

// ctlRun runs `switchyard ctl args...` and returns its exit status,
// stdout and stderr.
func ctlRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runCtl(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// tokenFile writes token to a file and returns its path.
func tokenFile(t *testing.T, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// reloadAPI is a stand-in admin API that speaks the reload contract:
// POST /api/v1/reload → 200 {"changed":[...],"restart_required":[...]}
// or 422 {"error":"..."}; any other request is a test failure.
func reloadAPI(t *testing.T, status int, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v1/reload" {
			t.Errorf("ctl reload sent %s %s", r.Method, r.URL.Path)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer tok" {
			t.Errorf("Authorization %q", got)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestCtlReload(t *testing.T) {
	checkLeaks(t)
	tok := tokenFile(t, "tok")
	addr := reloadAPI(t, 200, `{"changed":["limits.rate","log.level"],"restart_required":["listen"]}`)
	code, out, errOut := ctlRun(t, "--admin", addr, "--token-file", tok, "reload")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"reloaded: 2 change(s) in effect", "limits.rate  in effect", "listen       needs a restart"} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	// JSON: the API's answer, indented.
	code, out, _ = ctlRun(t, "--admin", addr, "--token-file", tok, "-o", "json", "reload")
	var r reloadResult
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || len(r.Changed) != 2 || r.RestartRequired[0] != "listen" {
		t.Fatalf("json: exit %d %s", code, out)
	}

	bad := reloadAPI(t, 422, `{"error":"limits.rate: want a positive number"}`)
	t.Setenv(ctlTokenEnv, tok) // the token file from the environment
	code, out, errOut = ctlRun(t, "--admin", bad, "reload")
	if code != 1 || out != "" || !strings.Contains(errOut, "422") || !strings.Contains(errOut, "limits.rate: want a positive number") {
		t.Fatalf("refused reload: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// The two mistakes an operator makes first get errors that name the fix.
func TestCtlErrors(t *testing.T) {
	checkGatewayLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	code, _, errOut := ctlRun(t, "--admin", closed, "info")
	if code != 1 || !strings.Contains(errOut, "no admin API at "+closed+" (connection refused)") {
		t.Fatalf("refused: exit %d %q", code, errOut)
	}

	g := startCtlGateway(t, "right")
	code, _, errOut = ctlRun(t, "--admin", g.AdminAddr(), "--token-file", tokenFile(t, "wrong"), "info")
	if code != 1 || !strings.Contains(errOut, "unauthorized (401): the admin token is missing or wrong") {
		t.Fatalf("wrong token: exit %d %q", code, errOut)
	}
	code, _, errOut = ctlRun(t, "--admin", g.AdminAddr(), "kick", "nobody", "--token-file", tokenFile(t, "right"))
	if code != 1 || !strings.Contains(errOut, `404 Not Found: device "nobody" is not connected`) {
		t.Fatalf("unknown device: exit %d %q", code, errOut)
	}
}

func TestCtlUsage(t *testing.T) {
	for _, args := range [][]string{
		{}, {"nonsense"}, {"session"}, {"kick", "a", "b"}, {"-o", "yaml", "info"}, {"--admin", "nohostport", "info"},
		{"sessions", "--limit", "0"}, {"info", "--bogus"},
	} {
		code, _, errOut := ctlRun(t, args...)
		if code != 2 || !strings.Contains(errOut, "usage: switchyard ctl") {
			t.Errorf("ctl %q: exit %d, stderr %q", args, code, errOut)
		}
	}
	if code, _, _ := ctlRun(t, "-h"); code != 0 {
		t.Errorf("ctl -h: exit %d", code)
	}
}

// startCtlGateway runs an in-process gateway with admin token token.
func startCtlGateway(t *testing.T, token string) *server.Gateway {
	t.Helper()
	g, err := server.New(server.Config{Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", AdminToken: token,
		Node: "gw-ctl", Version: "9.9", Commit: "c0ffee"})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close(context.Background()) })
	return g
}

// The tables of info, sessions and session, and kick, against a gateway.
func TestCtlTables(t *testing.T) {
	checkGatewayLeaks(t)
	g := startCtlGateway(t, "tok")
	var devs []*client.Client
	for i := range 3 {
		c, err := client.Dial(context.Background(), client.Config{Addr: g.Addr().String(), ID: fmt.Sprintf("dev-%d", i), DisableReconnect: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		devs = append(devs, c)
	}
	ctl := func(args ...string) string {
		t.Helper()
		code, out, errOut := ctlRun(t, append([]string{"--admin", g.AdminAddr(), "--token-file", tokenFile(t, "tok")}, args...)...)
		if code != 0 {
			t.Fatalf("ctl %q: exit %d: %s", args, code, errOut)
		}
		return out
	}
	out := ctl("info")
	for _, want := range []string{"name         gw-ctl", "version      9.9", "commit       c0ffee", "sessions     3", "ready        true"} {
		if !strings.Contains(out, want) {
			t.Fatalf("info lacks %q:\n%s", want, out)
		}
	}
	out = ctl("sessions", "--limit", "2")
	if !strings.Contains(out, "DEVICE") || !strings.Contains(out, "dev-0") || !strings.Contains(out, "dev-1") ||
		strings.Contains(out, "dev-2 ") || !strings.Contains(out, "more: switchyard ctl sessions --limit 2 --after dev-1") {
		t.Fatalf("sessions page:\n%s", out)
	}
	if out = ctl("sessions", "--after", "dev-1"); !strings.Contains(out, "dev-2") || strings.Contains(out, "dev-1") {
		t.Fatalf("second page:\n%s", out)
	}
	if out = ctl("-o", "json", "session", "dev-2"); !strings.Contains(out, `"device": "dev-2"`) {
		t.Fatalf("session json:\n%s", out)
	}
	if out = ctl("kick", "dev-2", "--reason", "test"); !strings.Contains(out, "kicked dev-2: ERROR 409 sent") {
		t.Fatalf("kick:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), poll.Patience)
	defer cancel()
	if _, err := devs[2].Recv(ctx); err == nil || !strings.Contains(err.Error(), "kicked by the operator: test") {
		t.Fatalf("kicked device's Recv: %v", err)
	}
}

// The commit the gateway reports (admin info): the -X main.commit value,
// else the build's VCS revision, else "unknown" — never empty.
func TestCommitID(t *testing.T) {
	old := commit
	t.Cleanup(func() { commit = old })
	commit = "abc123"
	if got := commitID(); got != "abc123" {
		t.Fatalf("commitID = %q", got)
	}
	commit = ""
	if got := commitID(); got == "" {
		t.Fatal("commitID is empty")
	}
}
