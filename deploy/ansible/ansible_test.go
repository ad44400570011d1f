// Package ansible holds the tests of the deploy/ansible roles: they run the
// real playbook against this host in render mode (every file written under
// a temporary root, nothing applied) and check what a gateway host would
// get. `make test` installs ansible-core (Debian) first.
package ansible

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// play runs site.yml on localhost with files rendered under root.
func play(t *testing.T, root string, extra ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("ansible-playbook"); err != nil {
		t.Fatal("ansible-playbook not found: `make test` installs ansible-core (apt-get install ansible-core)")
	}
	inv := filepath.Join(t.TempDir(), "inventory.ini")
	if err := os.WriteFile(inv, []byte("[gateways]\nlocalhost ansible_connection=local\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-i", inv, "site.yml", "-e", "switchyard_root=" + root, "-e", "ansible_become=false"}
	for _, e := range extra {
		args = append(args, "-e", e)
	}
	cmd := exec.Command("ansible-playbook", args...)
	cmd.Env = append(os.Environ(), "ANSIBLE_NOCOLOR=1", "ANSIBLE_LOCAL_TEMP="+t.TempDir(), "ANSIBLE_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMillionSessionHost renders the roles for one gateway with a million
// sessions and checks the limits that make it possible.
func TestMillionSessionHost(t *testing.T) {
	root := t.TempDir()
	out, err := play(t, root, "switchyard_max_sessions=1000000", "switchyard_gossip=10.0.0.1:7946",
		"switchyard_join=10.0.0.2:7946", `{"switchyard_cluster_keys": ["k1-at-least-16-bytes"], "switchyard_auth_secrets": ["s1", "s2"]}`)
	if err != nil {
		t.Fatalf("ansible-playbook: %v\n%s", err, out)
	}
	sysctl := read(t, filepath.Join(root, "etc/sysctl.d/99-switchyard.conf"))
	for _, want := range []string{
		"fs.nr_open = 1165536", // 1.1 × 1,000,000 + 65,536
		"fs.file-max = 2331072",
		"net.core.somaxconn = 65535",
		"net.ipv4.tcp_max_syn_backlog = 65535",
	} {
		if !strings.Contains(sysctl, want+"\n") {
			t.Errorf("99-switchyard.conf lacks %q:\n%s", want, sysctl)
		}
	}
	unit := read(t, filepath.Join(root, "etc/systemd/system/switchyard-gateway.service"))
	for _, want := range []string{
		"LimitNOFILE=1165536",
		"--max-conns 1000000",
		"TimeoutStopSec=45", // drain 30 s + 15
		"--drain-timeout 30s",
		"--heartbeat 30s", // durations everywhere: a bare 30 is refused
		"ExecReload=/bin/kill -HUP $MAINPID",
		"--cluster-key-file /etc/switchyard/cluster.keys",
		"--auth-secret-file /etc/switchyard/auth.secrets",
		"--gossip 10.0.0.1:7946",
		"Environment=GOMEMLIMIT=5859MiB",
		"KillSignal=SIGTERM",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	checkFlags(t, unit)
	if got := read(t, filepath.Join(root, "etc/switchyard/auth.secrets")); got != "s1\ns2\n" {
		t.Errorf("auth.secrets = %q", got)
	}
	if fi, err := os.Stat(filepath.Join(root, "etc/switchyard/cluster.keys")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("cluster.keys: %v %v", fi, err)
	}
}

// checkFlags builds cmd/switchyard and checks that every flag the unit's
// ExecStart passes to `switchyard gateway` exists: a renamed flag would
// otherwise surface only as a unit that fails to start on every host.
func checkFlags(t *testing.T, unit string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "switchyard")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/switchyard").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	help, _ := exec.Command(bin, "gateway", "--help").CombinedOutput()
	n := 0
	for _, f := range strings.Fields(unit) {
		if name, ok := strings.CutPrefix(f, "--"); ok && name != "" {
			n++
			if !strings.Contains(string(help), "  -"+name+" ") && !strings.Contains(string(help), "  -"+name+"\n") {
				t.Errorf("the unit passes --%s, which `switchyard gateway` does not have", name)
			}
		}
	}
	if n < 8 {
		t.Errorf("found %d flags in the unit, want at least 8:\n%s", n, unit)
	}
}

// TestLoneGatewayLeavesClusterFlagsOut: without gossip and auth the unit
// runs a lone gateway with the embedded echo.
func TestLoneGatewayLeavesClusterFlagsOut(t *testing.T) {
	root := t.TempDir()
	if out, err := play(t, root, "switchyard_max_sessions=20000"); err != nil {
		t.Fatalf("ansible-playbook: %v\n%s", err, out)
	}
	unit := read(t, filepath.Join(root, "etc/systemd/system/switchyard-gateway.service"))
	for _, absent := range []string{"--gossip", "--cluster-key-file", "--auth-secret-file"} {
		if strings.Contains(unit, absent) {
			t.Errorf("unit has %s:\n%s", absent, unit)
		}
	}
	if !strings.Contains(unit, "Environment=GOMEMLIMIT=512MiB") {
		t.Errorf("GOMEMLIMIT floor missing:\n%s", unit)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/switchyard/auth.secrets")); err == nil {
		t.Error("auth.secrets written without secrets")
	}
}

// TestGossipWithoutKeysRefused: a cluster member without keys would write
// an empty key file and fail at start on every host; it fails here.
func TestGossipWithoutKeysRefused(t *testing.T) {
	out, err := play(t, t.TempDir(), "switchyard_gossip=10.0.0.1:7946")
	if err == nil || !strings.Contains(out, "switchyard_cluster_keys is empty") {
		t.Fatalf("gossip without keys: err %v\n%s", err, out)
	}
}

// TestPreflightRefusesTooSmallHost: a host whose memory cannot hold the
// sessions is refused before anything is written.
func TestPreflightRefusesTooSmallHost(t *testing.T) {
	root := t.TempDir()
	out, err := play(t, root, "switchyard_max_sessions=1000000000")
	if err == nil {
		t.Fatalf("a billion sessions passed the preflight:\n%s", out)
	}
	if !strings.Contains(out, "sessions need") {
		t.Errorf("no explanation in the failure:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/sysctl.d/99-switchyard.conf")); err == nil {
		t.Error("settings written for a host the preflight refused")
	}
}
