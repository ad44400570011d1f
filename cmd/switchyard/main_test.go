package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runArgs(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		code, out, _ := runArgs(t, arg)
		if code != 0 || !strings.Contains(out, "switchyard "+version) || !strings.Contains(out, "commit ") ||
			!strings.Contains(out, "go1.") {
			t.Errorf("%s: exit %d, %q", arg, code, out)
		}
	}
}

// TestConfigProblemsExit2: a bad configuration names every problem and
// exits 2 without starting anything; so does a bad command line.
func TestConfigProblemsExit2(t *testing.T) {
	file := filepath.Join(t.TempDir(), "gw.yaml")
	if err := os.WriteFile(file, []byte("rate_brust: 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SWITCHYARD_MAX_CONNS", "lots")
	code, _, stderr := runArgs(t, "gateway", "--config", file, "--heartbeat", "30", "--listen", "127.0.0.1:0", "--admin", "-")
	if code != exitUsage {
		t.Fatalf("exit %d, want 2:\n%s", code, stderr)
	}
	for _, want := range []string{"3 problem(s)", "rate_brust", "SWITCHYARD_MAX_CONNS", "--heartbeat"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if code, _, _ := runArgs(t, "gateway", "--no-such-flag"); code != exitUsage {
		t.Errorf("unknown flag: exit %d, want 2", code)
	}
	if code, _, stderr := runArgs(t, "backend", "--app", "nope"); code != exitUsage || !strings.Contains(stderr, "shard is required") {
		t.Errorf("backend: exit %d:\n%s", code, stderr)
	}
}

// TestPrintConfig: --print-config prints the effective configuration
// with the secret files' paths and none of their contents, and exits 0.
func TestPrintConfig(t *testing.T) {
	dir := t.TempDir()
	secret := "very-secret-device-key"
	path := filepath.Join(dir, "auth.secrets")
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SWITCHYARD_RATE", "42")
	code, out, stderr := runArgs(t, "gateway", "--auth-secret-file", path, "--print-config")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	if strings.Contains(out, secret) || !strings.Contains(out, "auth_secret_file: "+path) || !strings.Contains(out, "rate: 42") {
		t.Fatalf("printed:\n%s", out)
	}
}
