package ansible

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/internal/leakcheck"
	"github.com/switchyard-gw/switchyard/internal/poll"
)

func TestMain(m *testing.M) { leakcheck.Main(m, nil) }

// TestLint: ansible-lint's production profile finds nothing in the
// playbooks and roles.
func TestLint(t *testing.T) {
	if _, err := exec.LookPath("ansible-lint"); err != nil {
		t.Fatal("ansible-lint not found: make test-ansible installs it (apt-get install ansible-lint)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ansible-lint", "--profile", "production", "--nocolor")
	cmd.Env = append(os.Environ(), "ANSIBLE_HOME="+t.TempDir(), "ANSIBLE_LOCAL_TEMP="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ansible-lint --profile production: %v\n%s", err, out)
	}
}

// TestCluster runs the playbooks over SSH against three throwaway hosts
// (hosts_test.go) built from inventory.example.ini: site.yml installs two
// gateways and three shards and changes things, a second run changes
// nothing, the cluster forms and devices connect through it; then
// rolling-upgrade.yml rolls a new build over every host while loadgen
// --verify keeps reliable traffic flowing, and not one frame is lost.
func TestCluster(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it creates network namespaces, overlay mounts and sshd hosts (make test-ansible runs it as root and fails when it cannot)")
	}
	for _, tool := range []string{"ansible-playbook", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: make test-ansible installs Debian's ansible (and systemd is on every Debian)", tool)
		}
	}
	bins := t.TempDir()
	v1, v2 := filepath.Join(bins, "switchyard-v1"), filepath.Join(bins, "switchyard-v2")
	loadgen := filepath.Join(bins, "loadgen")
	build(t, v1, "-ldflags", "-X main.version=v1-ansible-test", "../../cmd/switchyard")
	build(t, v2, "-ldflags", "-X main.version=v2-ansible-test", "../../cmd/switchyard")
	build(t, loadgen, "../../tools/loadgen")

	l := newLab(t, 3)
	a := newAnsible(t, l, v1)
	gateways := []*host{l.hosts[0], l.hosts[1]}
	unitsRunning := func() map[string]int {
		m := map[string]int{}
		for _, h := range l.hosts {
			for _, u := range []string{"switchyard-gateway", "switchyard-backend"} {
				if pid := h.pid(u); pid != 0 {
					m[h.name+"/"+u] = pid
				}
			}
		}
		return m
	}

	// First run: everything is installed and started. This machine's own
	// kernel settings stay as they were.
	hostSettings := run(t, "sysctl", "net.core.somaxconn", "fs.nr_open", "fs.file-max")
	recap := a.play(t, "site.yml")
	if changed := sum(recap); changed == 0 {
		t.Fatalf("the first site.yml run changed nothing: %v", recap)
	}
	running := unitsRunning()
	if len(running) != 5 {
		t.Fatalf("after site.yml: running %v, want 2 gateways and 3 shards", running)
	}
	adm := newAdmin(t, a)
	poll.Until(t, poll.Patience, func() error { return adm.clusterFormed(gateways, 3, "v1-ansible-test") })

	// Second run: nothing changes, nothing restarts. All hosts at once
	// (the serial path ran above; this is about every task's result).
	recap = a.play(t, "site.yml", "switchyard_serial=3")
	for h, c := range recap {
		if c != 0 {
			t.Errorf("second site.yml run: %s changed=%d, want 0 (a task is not idempotent; see the output above)", h, c)
		}
	}
	if again := unitsRunning(); fmt.Sprint(again) != fmt.Sprint(running) {
		t.Errorf("second site.yml run restarted services: %v, then %v", running, again)
	}
	checkHosts(t, l, a)
	if got := run(t, "sysctl", "net.core.somaxconn", "fs.nr_open", "fs.file-max"); got != hostSettings {
		t.Errorf("site.yml changed this machine's kernel settings: %s, now %s", hostSettings, got)
	}

	// A device connects through each gateway and is answered by a shard.
	secret := filepath.Join(a.dir, "credentials/auth.secret")
	addrs := gateways[0].addr + ":7400," + gateways[1].addr + ":7400"
	lg := exec.Command(loadgen, "--addr", addrs, "--sessions", "4", "--ramp", "0", "--duration", "2s",
		"--verify", "--src-spread", "-1", "--secret-file", secret, "--quiet")
	if out, err := lg.CombinedOutput(); err != nil {
		t.Fatalf("devices through the cluster: %v\n%s", err, out)
	}
	if t.Failed() {
		return
	}

	// The roll, under reliable traffic through both gateways.
	summary := filepath.Join(a.dir, "loadgen.json")
	lgLog, err := os.Create(filepath.Join(a.dir, "loadgen.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer lgLog.Close()
	lg = exec.Command(loadgen, "--addr", addrs, "--sessions", "40", "--ramp", "40", "--rate", "5",
		"--duration", "15m", "--verify", "--src-spread", "-1", "--secret-file", secret,
		"--json", summary, "--quiet", "--incidents", filepath.Join(a.dir, "incidents.jsonl"))
	lg.Stdout, lg.Stderr = lgLog, lgLog
	if err := lg.Start(); err != nil {
		t.Fatal(err)
	}
	var lgErr error
	lgDone := make(chan struct{})
	go func() {
		lgErr = lg.Wait()
		close(lgDone)
	}()
	t.Cleanup(func() {
		select {
		case <-lgDone:
		default:
			_ = lg.Process.Kill()
			<-lgDone
		}
	})
	poll.Until(t, poll.Patience, func() error {
		n := 0
		for _, g := range gateways {
			info, err := adm.info(g)
			if err != nil {
				return err
			}
			n += info.Sessions
		}
		if n < 40 {
			return fmt.Errorf("%d of 40 sessions up", n)
		}
		return nil
	})

	a.binary = v2
	a.play(t, "rolling-upgrade.yml")

	_ = lg.Process.Signal(syscall.SIGINT)
	select {
	case <-lgDone:
		if lgErr != nil {
			t.Errorf("loadgen: %v\n%s", lgErr, tail(lgLog.Name()))
		}
	case <-time.After(time.Minute):
		t.Fatalf("loadgen did not stop within a minute of SIGINT:\n%s", tail(lgLog.Name()))
	}
	checkNoLoss(t, summary)

	poll.Until(t, poll.Patience, func() error { return adm.clusterFormed(gateways, 3, "v2-ansible-test") })

	// The preflight refuses a host whose cluster keys differ from the
	// others', and names both.
	hv := filepath.Join(a.dir, "host_vars")
	if err := os.MkdirAll(hv, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(hv, "sy3.yml"), "switchyard_cluster_keys: [another-key-of-16-bytes-or-more]\n", 0o644)
	a.wantFail = "sy1 and sy3 have different switchyard_cluster_keys"
	a.play(t, "preflight.yml")
	a.wantFail = ""

	for _, h := range l.hosts {
		for u, pid := range unitsRunning() {
			if strings.HasPrefix(u, h.name+"/") && pid == running[u] {
				t.Errorf("%s still runs the process it ran before the roll (pid %d)", u, pid)
			}
		}
	}
}

func build(t *testing.T, out string, args ...string) {
	t.Helper()
	args = append([]string{"build", "-o", out}, args...)
	if b, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
}

// ansible runs playbooks against the lab with inventory.example.ini, as
// written but for the addresses, and a few test-only variables.
type ansible struct {
	lab    *lab
	dir    string // inventory, credentials, logs
	binary string
	n      int
	// wantFail: the next play must fail with this in its output.
	wantFail string
}

func newAnsible(t *testing.T, l *lab, binary string) *ansible {
	a := &ansible{lab: l, dir: t.TempDir(), binary: binary}
	example, err := os.ReadFile("inventory.example.ini")
	if err != nil {
		t.Fatal(err)
	}
	inv := strings.ReplaceAll(string(example), "10.0.0.", subnet)
	for _, h := range l.hosts {
		if !strings.Contains(inv, h.name+" ansible_host="+h.addr) {
			t.Fatalf("inventory.example.ini no longer lists %s at %s (10.0.0.x in the example):\n%s", h.name, h.addr, inv)
		}
	}
	write(t, filepath.Join(a.dir, "inventory.ini"), inv, 0o644)
	// The test hosts: root over SSH with the lab's key (no sudo there, so
	// no become), no systemd (the lab runs the units), a shared machine
	// (no host-wide sysctls), small numbers.
	write(t, filepath.Join(a.dir, "test-vars.yml"), `ansible_user: root
ansible_become: false
ansible_ssh_private_key_file: `+l.key+`
ansible_python_interpreter: /usr/bin/python3
switchyard_service_manager: command
switchyard_service_command: /usr/local/sbin/switchyard-test-svc
switchyard_tune_global: false
switchyard_max_sessions: 20000
switchyard_drain_timeout: 5
switchyard_backend_drain_timeout: 10
`, 0o644)
	if err := os.MkdirAll(filepath.Join(a.dir, "cp"), 0o700); err != nil {
		t.Fatal(err)
	}
	// SSH connections are shared per host (ControlPersist) and closed
	// here, by their control sockets, when the test ends.
	t.Cleanup(func() {
		for _, h := range l.hosts {
			_ = exec.Command("ssh", "-O", "exit", "-o", "ControlPath="+a.controlPath(h.addr), "root@"+h.addr).Run()
		}
	})
	return a
}

func (a *ansible) controlPath(addr string) string {
	return filepath.Join(a.dir, "cp", addr+"-root")
}

// playbookLimit bounds one ansible-playbook run (play).
const playbookLimit = 10 * time.Minute

var recapLine = regexp.MustCompile(`(?m)^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)`)

// play runs a playbook over SSH and returns changed= per host from its
// recap; a failure, an unreachable host or a missing host fails the test.
func (a *ansible) play(t *testing.T, playbook string, extra ...string) map[string]int {
	t.Helper()
	a.n++
	// A bound for a playbook that hangs, not a timing: ten minutes (on a
	// quiet 2-core box rolling-upgrade.yml, the longest, takes under two;
	// with the cores shared by two busy processes it took 5m38s), and a
	// minute before go test's own deadline: a test that times out there
	// would skip its cleanup and leave the hosts behind.
	deadline := time.Now().Add(playbookLimit)
	if d, ok := t.Deadline(); ok && d.Add(-time.Minute).Before(deadline) {
		deadline = d.Add(-time.Minute)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	args := []string{"-i", filepath.Join(a.dir, "inventory.ini"),
		"-e", "@" + filepath.Join(a.dir, "test-vars.yml"), "-e", "switchyard_binary=" + a.binary, playbook}
	for _, e := range extra {
		args = append(args, "-e", e)
	}
	cmd := exec.CommandContext(ctx, "ansible-playbook", args...)
	cmd.Env = append(os.Environ(), "ANSIBLE_NOCOLOR=1", "ANSIBLE_FORCE_COLOR=0",
		"ANSIBLE_HOME="+filepath.Join(a.dir, "home"), "ANSIBLE_LOCAL_TEMP="+filepath.Join(a.dir, "tmp"),
		"ANSIBLE_HOST_KEY_CHECKING=False", "ANSIBLE_RETRY_FILES_ENABLED=False", "ANSIBLE_PIPELINING=True",
		"ANSIBLE_FORKS=3", "ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks", "ANSIBLE_SSH_CONTROL_PATH="+filepath.Join(a.dir, "cp", "%%h-%%r"),
		"ANSIBLE_SSH_ARGS=-o ControlMaster=auto -o ControlPersist=600s -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no")
	// The output goes to a file as it comes (to follow a slow run), and
	// is read back for the recap.
	logPath := filepath.Join(a.dir, fmt.Sprintf("%d-%s.log", a.n, playbook))
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	err = cmd.Run()
	out, _ := os.ReadFile(logPath)
	t.Logf("ansible-playbook %s: %v (log %s)", playbook, time.Since(start).Round(time.Second), logPath)
	if a.wantFail != "" {
		if err == nil || !strings.Contains(string(out), a.wantFail) {
			t.Errorf("ansible-playbook %s: %v, want a failure saying %q\n%s", playbook, err, a.wantFail, lastLines(string(out), 40))
		}
		return nil
	}
	if err != nil {
		t.Fatalf("ansible-playbook %s: %v\n%s%s", playbook, err, lastLines(string(out), 80), a.unitLogs())
	}
	recap := map[string]int{}
	for _, m := range recapLine.FindAllStringSubmatch(string(out), -1) {
		c, _ := strconv.Atoi(m[2])
		recap[m[1]] += c
		if m[3] != "0" || m[4] != "0" {
			t.Fatalf("ansible-playbook %s: %s unreachable=%s failed=%s\n%s", playbook, m[1], m[3], m[4], lastLines(string(out), 80))
		}
	}
	for _, h := range a.lab.hosts {
		if _, ok := recap[h.name]; !ok {
			t.Fatalf("ansible-playbook %s: no recap for %s\n%s", playbook, h.name, lastLines(string(out), 80))
		}
	}
	if testing.Verbose() {
		t.Logf("recap: %v", recap)
	}
	return recap
}

func (a *ansible) unitLogs() string {
	var b strings.Builder
	for _, h := range a.lab.hosts {
		for _, u := range []string{"switchyard-gateway", "switchyard-backend"} {
			if p := filepath.Join(h.dir, u+".log"); fileExists(p) {
				fmt.Fprintf(&b, "\n--- %s %s (last lines):\n%s", h.name, u, lastLines(tail(p), 15))
			}
		}
	}
	return b.String()
}

func httpStatus(url string) int {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// admin calls the gateways' admin API with the token site.yml installed.
type admin struct {
	token  string
	client *http.Client
}

func newAdmin(t *testing.T, a *ansible) *admin {
	b, err := os.ReadFile(filepath.Join(a.dir, "credentials/admin.token"))
	if err != nil {
		t.Fatalf("the admin token site.yml generated: %v", err)
	}
	return &admin{token: strings.TrimSpace(string(b)), client: &http.Client{Timeout: 5 * time.Second}}
}

func (ad *admin) get(h *host, path string, v any) error {
	req, err := http.NewRequest(http.MethodGet, "http://"+h.addr+":7480"+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+ad.token)
	resp, err := ad.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", h.name, path, resp.Status, body)
	}
	return json.Unmarshal(body, v)
}

type nodeInfo struct {
	Version  string `json:"version"`
	Sessions int    `json:"sessions"`
	Shards   int    `json:"shards"`
	Ready    bool   `json:"ready"`
}

func (ad *admin) info(h *host) (nodeInfo, error) {
	var info nodeInfo
	err := ad.get(h, "/api/v1/info", &info)
	return info, err
}

// clusterFormed: every gateway is ready at version, sees the shards in
// its ring and every member (gateways and shards) alive at version.
func (ad *admin) clusterFormed(gateways []*host, shards int, version string) error {
	for _, g := range gateways {
		info, err := ad.info(g)
		if err != nil {
			return err
		}
		if !info.Ready || info.Shards != shards || info.Version != version {
			return fmt.Errorf("%s: %+v, want ready, %d shards, version %s", g.name, info, shards, version)
		}
		var members []struct {
			Addr, Role, State, Version string
			Alive                      bool
		}
		if err := ad.get(g, "/api/v1/cluster/members", &members); err != nil {
			return err
		}
		n := 0
		for _, m := range members {
			if m.Alive {
				n++
				if m.State != "active" || m.Version != version {
					return fmt.Errorf("%s sees %+v, want active at %s", g.name, m, version)
				}
			}
		}
		if n != len(gateways)+shards {
			return fmt.Errorf("%s sees %d live members, want %d: %+v", g.name, n, len(gateways)+shards, members)
		}
	}
	return nil
}

// checkHosts checks what site.yml left on the hosts: secrets, files
// named by the configuration, no secret in any argv, the kernel settings
// applied inside the host only, the units valid and well sandboxed.
func checkHosts(t *testing.T, l *lab, a *ansible) {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(a.dir, "credentials/admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range l.hosts {
		gid, err := h.lookupID("group", "switchyard")
		if err != nil {
			t.Fatal(err)
		}
		secrets := []string{"cluster.keys", "admin.token"}
		if h.pid("switchyard-gateway") != 0 {
			secrets = append(secrets, "auth.secrets")
		}
		// Every shard serves /metrics on its address (Prometheus on
		// another host), behind the token.
		if code := httpStatus("http://" + h.addr + ":7680/metrics"); code != http.StatusUnauthorized {
			t.Errorf("%s: shard /metrics without the token: %d, want 401", h.name, code)
		}
		for _, s := range secrets {
			fi, err := os.Stat(filepath.Join(h.upper, "etc/switchyard", s))
			if err != nil {
				t.Errorf("%s: %v", h.name, err)
				continue
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode().Perm() != 0o640 || st.Uid != 0 || strconv.Itoa(int(st.Gid)) != gid {
				t.Errorf("%s: /etc/switchyard/%s is %v %d:%d, want 0640 root:switchyard (%s)", h.name, s, fi.Mode(), st.Uid, st.Gid, gid)
			}
		}
		for _, u := range []string{"switchyard-gateway", "switchyard-backend"} {
			pid := h.pid(u)
			if pid == 0 {
				continue
			}
			argv, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(argv, bytes.TrimSpace(token)) || !bytes.Contains(argv, []byte("--config")) {
				t.Errorf("%s %s argv: %q: want --config and no secret", h.name, u, argv)
			}
			verifyUnit(t, h, u)
		}
		conf, err := os.ReadFile(filepath.Join(h.upper, "etc/sysctl.d/99-switchyard.conf"))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(conf, []byte("fs.")) || bytes.Contains(conf, []byte("vm.")) {
			t.Errorf("%s: switchyard_tune_global=false, yet the sysctl file has host-wide settings:\n%s", h.name, conf)
		}
		// Applied inside the host's network namespace.
		if got := strings.TrimSpace(run(t, "ip", "netns", "exec", h.ns, "sysctl", "-n", "net.core.somaxconn")); got != "65535" {
			t.Errorf("%s: net.core.somaxconn = %s, want 65535", h.name, got)
		}
		if fileExists("/proc/sys/net/netfilter/nf_conntrack_max") && h.pid("switchyard-gateway") != 0 {
			out := run(t, "ip", "netns", "exec", h.ns, "nft", "list", "table", "inet", "switchyard_notrack")
			if !strings.Contains(out, "tcp dport 7400 notrack") {
				t.Errorf("%s: no notrack rule for the device port:\n%s", h.name, out)
			}
		}
	}
}

// verifyUnit runs systemd-analyze verify and security on an installed
// unit, offline, inside the host's own root (its mount namespace: the
// overlay with the unit, the binary and everything else of the system).
func verifyUnit(t *testing.T, h *host, u string) {
	t.Helper()
	in := []string{"-t", strconv.Itoa(h.sshd.Process.Pid), "-m", "-r", "-w", "--", "systemd-analyze"}
	unit := "/etc/systemd/system/" + u + ".service"
	out, err := exec.Command("nsenter", append(in, "verify", "--man=no", unit)...).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("%s: systemd-analyze verify %s: %v\n%s", h.name, u, err, out)
	}
	out, err = exec.Command("nsenter", append(in, "security", "--offline=yes", "--threshold=25", "--no-pager", unit)...).CombinedOutput()
	score := lastLines(string(out), 1)
	if err != nil {
		t.Errorf("%s: systemd-analyze security %s: exposure above 2.5 (or it failed): %v\n%s", h.name, u, err, lastLines(string(out), 40))
	} else if testing.Verbose() {
		t.Logf("%s: systemd-analyze security %s: %s", h.name, u, strings.TrimSpace(score))
	}
}

// checkNoLoss reads loadgen's --verify summary: traffic flowed, and none
// was lost, duplicated or reordered while every host was rolled.
func checkNoLoss(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Sent        int64            `json:"frames_sent"`
		Received    int64            `json:"frames_received"`
		Reconnects  int64            `json:"reconnects"`
		Causes      map[string]int64 `json:"disconnect_causes"`
		Verify      map[string]any   `json:"verify"`
		Handshakes  int64            `json:"handshakes"`
		Disconnects int64            `json:"disconnects"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	t.Logf("loadgen during the roll: %d frames sent, %d received, %d reconnects, causes %v, verify %v", s.Sent, s.Received, s.Reconnects, s.Causes, s.Verify)
	if s.Verify == nil || s.Verify["ok"] != true {
		t.Errorf("loadgen --verify found violations: %v", s.Verify)
	}
	for _, k := range []string{"up_lost", "down_lost", "up_dup", "down_dup", "up_reset", "unacked", "unanswered"} {
		if v, _ := s.Verify[k].(float64); v != 0 {
			t.Errorf("loadgen --verify: %s = %v, want 0", k, v)
		}
	}
	if s.Received == 0 || s.Sent == 0 {
		t.Errorf("no traffic during the roll: %d sent, %d received", s.Sent, s.Received)
	}
	if s.Causes["goaway"] == 0 {
		t.Errorf("no device was sent away (GOAWAY) during the roll: the gateways were not drained? causes %v", s.Causes)
	}
}

// TestMillionSessionValues renders the templates for a million sessions
// on a dedicated host (testdata/render.yml: nothing applied, no root) and
// checks the figures docs/scale.md gives for it.
func TestMillionSessionValues(t *testing.T) {
	if _, err := exec.LookPath("ansible-playbook"); err != nil {
		t.Fatal("ansible-playbook not found: make test-ansible installs Debian's ansible")
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ansible-playbook", "-i", "localhost,", "testdata/render.yml",
		"-e", "switchyard_render_dir="+out, "-e", "switchyard_max_sessions=1000000",
		"-e", "switchyard_address=10.0.0.11", "-e", "switchyard_conntrack=true",
		"-e", `{"switchyard_cluster_keys": ["k1-at-least-16-bytes"], "switchyard_auth_secrets": ["s1"], "switchyard_admin_token": "t"}`)
	cmd.Env = append(os.Environ(), "ANSIBLE_NOCOLOR=1", "ANSIBLE_HOME="+t.TempDir(), "ANSIBLE_LOCAL_TEMP="+t.TempDir(),
		"ANSIBLE_ROLES_PATH=roles", "ANSIBLE_LOCALHOST_WARNING=False", "ANSIBLE_INVENTORY_UNPARSED_WARNING=False")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ansible-playbook testdata/render.yml: %v\n%s", err, b)
	}
	file := func(name string) string {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for name, wants := range map[string][]string{
		"99-switchyard.conf": {
			"fs.nr_open = 1165536\n", // 1.1 × 1,000,000 + 65,536
			"fs.file-max = 2331072\n",
			"net.core.somaxconn = 65535\n",
			"net.ipv4.tcp_max_syn_backlog = 65535\n",
			"net.core.netdev_max_backlog = 16384\n",
			"net.netfilter.nf_conntrack_max = 1250000\n",
			"vm.swappiness = 1\n",
		},
		"switchyard-gateway.service": {
			"ExecStart=/usr/local/bin/switchyard gateway --config /etc/switchyard/gateway.yaml\n",
			"LimitNOFILE=1165536\n",
			"TimeoutStopSec=45\n", // drain 30 s + 15
			"KillSignal=SIGTERM\n",
			"Environment=GOMEMLIMIT=5859MiB\n",
			"MemorySwapMax=0\n",
			"ProtectSystem=strict\n",
		},
		"gateway.yaml": {
			"max_conns: 1000000\n",
			"drain_timeout: 30s\n",
			"admin_listen: 10.0.0.11:7480\n",
			"admin_token_file: /etc/switchyard/admin.token\n",
			"auth_secret_file: /etc/switchyard/auth.secrets\n",
			"cluster_key_file: /etc/switchyard/cluster.keys\n",
			"bind: 10.0.0.11:7946\n",
		},
		"switchyard-backend.service": {
			"ExecStart=/usr/local/bin/switchyard backend --config /etc/switchyard/backend.yaml\n",
			"TimeoutStopSec=30\n", // drain 10 s + close 5 s + 15
		},
		"backend.yaml": {
			"link: 10.0.0.11:7600\n",
			"admin_listen: 10.0.0.11:7680\n",
			"admin_token_file: /etc/switchyard/admin.token\n",
			"bind: 10.0.0.11:7947\n",
		},
	} {
		got := file(name)
		for _, want := range wants {
			if !strings.Contains(got, want) {
				t.Errorf("%s lacks %q:\n%s", name, want, got)
			}
		}
		if strings.Contains(got, "k1-at-least") || strings.Contains(got, "s1\n") {
			t.Errorf("%s holds a secret:\n%s", name, got)
		}
	}
}
