package ansible

// Throwaway hosts for the playbooks: each is a network namespace with a
// veth on a bridge (10.213.0.0/24, nothing else), its own root (an overlay
// of / whose writes land in a temporary directory, mounted in a private
// mount namespace) and its own sshd with key-only root login. They have no
// systemd, so the playbooks run with switchyard_service_manager=command and
// the hosts' service command calls back into this test, which starts each
// unit's own ExecStart (read from the installed unit) inside the host and
// keeps its PID.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/internal/poll"
)

// subnet is the hosts' network; the bridge (this side) is .1, host i is
// .(10+i). The test refuses to run if the machine already uses it.
const subnet = "10.213.0."

// lab is the set of throwaway hosts and the service manager they call.
type lab struct {
	t       *testing.T
	dir     string
	id      string
	bridge  string
	key     string // root's private key for every host
	hosts   []*host
	svcAddr string
	svc     *http.Server
}

// host is one throwaway machine.
type host struct {
	name     string // inventory name (sy1 …)
	ns       string
	veth     string
	addr     string
	dir      string // upper, work, root, logs
	upper    string
	sshd     *exec.Cmd
	sshdDone chan struct{}

	mu    sync.Mutex
	units map[string]*unit
}

// unit is one service the test started for a host, from its unit file.
type unit struct {
	cmd         *exec.Cmd
	done        chan struct{}
	stopTimeout time.Duration
}

func (u *unit) running() bool {
	select {
	case <-u.done:
		return false
	default:
		return true
	}
}

// run runs a command of the test's own setup and fails the test on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newLab creates n hosts named sy1 … syn; everything is undone by the
// test's cleanup, also when it fails half-way.
func newLab(t *testing.T, n int) *lab {
	t.Helper()
	for _, tool := range []string{"ip", "unshare", "nsenter", "prlimit", "setpriv", "chroot", "curl", "ssh", "ssh-keygen", "/usr/sbin/sshd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: make test-ansible installs what the test needs (openssh-server, util-linux, iproute2, curl)", tool)
		}
	}
	if out := run(t, "ip", "-4", "-o", "addr") + run(t, "ip", "-4", "route"); strings.Contains(out, subnet) {
		t.Fatalf("%s0/24 is already in use on this machine (another run of this test?):\n%s", subnet, out)
	}
	b := make([]byte, 2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, dir: t.TempDir(), id: hex.EncodeToString(b)}
	l.bridge = "sy" + l.id + "br"
	t.Cleanup(l.close)

	run(t, "ip", "link", "add", l.bridge, "type", "bridge")
	run(t, "ip", "addr", "add", subnet+"1/24", "dev", l.bridge)
	run(t, "ip", "link", "set", l.bridge, "up")
	l.key = filepath.Join(l.dir, "id_ed25519")
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "switchyard-test", "-f", l.key)
	l.startServiceManager()
	for i := 1; i <= n; i++ {
		l.addHost(i)
	}
	for _, h := range l.hosts {
		addr := net.JoinHostPort(h.addr, "22")
		poll.Until(t, 30*time.Second, func() error {
			select {
			case <-h.sshdDone:
				return fmt.Errorf("sshd of %s exited: %s", h.name, tail(filepath.Join(h.dir, "sshd.log")))
			default:
			}
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return fmt.Errorf("sshd of %s: %v", h.name, err)
			}
			return c.Close()
		})
	}
	return l
}

// addHost creates host i: namespace, veth, overlay root, sshd.
func (l *lab) addHost(i int) {
	t := l.t
	h := &host{name: "sy" + strconv.Itoa(i), ns: "sy" + l.id + "-h" + strconv.Itoa(i),
		addr: subnet + strconv.Itoa(10+i), units: map[string]*unit{}}
	h.dir = filepath.Join(l.dir, h.name)
	h.upper = filepath.Join(h.dir, "upper")
	l.hosts = append(l.hosts, h)
	for _, d := range []string{h.upper, filepath.Join(h.dir, "work"), filepath.Join(h.dir, "root")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run(t, "ip", "netns", "add", h.ns)
	h.veth = "sy" + l.id + "v" + strconv.Itoa(i)
	veth := h.veth
	run(t, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
	run(t, "ip", "link", "set", veth, "master", l.bridge, "up")
	run(t, "ip", "-n", h.ns, "addr", "add", h.addr+"/24", "dev", "eth0")
	run(t, "ip", "-n", h.ns, "link", "set", "eth0", "up")
	run(t, "ip", "-n", h.ns, "link", "set", "lo", "up")
	// A default route so that the host has ansible_default_ipv4; this
	// machine does not forward, so nothing leaves the bridge.
	run(t, "ip", "-n", h.ns, "route", "add", "default", "via", subnet+"1")

	// sshd's files and the service command, written into the overlay's
	// upper directory: the host sees them, this machine's / does not.
	sshDir := filepath.Join(h.upper, "etc/ssh/switchyard-test")
	if err := os.MkdirAll(sshDir, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(sshDir, "host_key"))
	pub, err := os.ReadFile(l.key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(sshDir, "authorized_keys"), string(pub), 0o600)
	write(t, filepath.Join(sshDir, "sshd_config"), `ListenAddress `+h.addr+`:22
HostKey /etc/ssh/switchyard-test/host_key
AuthorizedKeysFile /etc/ssh/switchyard-test/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile /run/sshd-switchyard-test.pid
MaxSessions 50
MaxStartups 50
Subsystem sftp internal-sftp
`, 0o644)
	// A plain root shell: this machine's ~/.bashrc may do slow things
	// (version managers) that sshd's shell would run for every command.
	if err := os.MkdirAll(filepath.Join(h.upper, "root"), 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(h.upper, "root/.bashrc"), "# throwaway test host (deploy/ansible): nothing to set up\n", 0o644)
	if err := os.MkdirAll(filepath.Join(h.upper, "usr/local/sbin"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(h.upper, "usr/local/sbin/switchyard-test-svc"), `#!/bin/sh
# switchyard-test-svc start|stop|restart|status UNIT: this test host has no
# systemd; the test that created it runs the units (deploy/ansible).
exec curl -sS --fail-with-body --max-time 120 "http://`+l.svcAddr+`/$1/$2"
`, 0o755)

	root := filepath.Join(h.dir, "root")
	script := fmt.Sprintf(`set -e
mount -t overlay overlay -o lowerdir=/,upperdir=%[1]s/upper,workdir=%[1]s/work %[2]s
mount -t proc proc %[2]s/proc
mount -t sysfs sysfs %[2]s/sys
mount --rbind /dev %[2]s/dev
mount -t tmpfs -o mode=1777 tmpfs %[2]s/tmp
mount -t tmpfs -o mode=0755 tmpfs %[2]s/run
mkdir -p %[2]s/run/sshd
exec chroot %[2]s /usr/sbin/sshd -D -e -f /etc/ssh/switchyard-test/sshd_config
`, h.dir, root)
	// ip netns exec and unshare exec (no fork), and so do sh and chroot:
	// the PID is sshd's, and its mount namespace holds the overlay.
	h.sshd = exec.Command("ip", "netns", "exec", h.ns, "unshare", "-m", "--propagation", "private", "sh", "-c", script)
	logf, err := os.Create(filepath.Join(h.dir, "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	h.sshd.Stdout, h.sshd.Stderr = logf, logf
	if err := h.sshd.Start(); err != nil {
		t.Fatal(err)
	}
	h.sshdDone = make(chan struct{})
	go func() {
		_ = h.sshd.Wait()
		close(h.sshdDone)
	}()
}

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// tail is the end of a log file, for failure messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// close undoes everything, in reverse: the units and sshd (by PID), the
// namespaces (their veths go with them; the overlay's mount namespace
// ends with its last process), the bridge.
func (l *lab) close() {
	for _, h := range l.hosts {
		h.mu.Lock()
		for _, u := range h.units {
			if u.running() {
				_ = u.cmd.Process.Kill()
				<-u.done
			}
		}
		h.mu.Unlock()
		if h.sshd != nil && h.sshd.Process != nil {
			_ = h.sshd.Process.Signal(syscall.SIGTERM)
			select {
			case <-h.sshdDone:
			case <-time.After(10 * time.Second):
				_ = h.sshd.Process.Kill()
				<-h.sshdDone
			}
		}
	}
	if l.svc != nil {
		_ = l.svc.Close()
	}
	for _, h := range l.hosts {
		// What sshd started for the playbooks and outlived it (a session
		// whose client is gone, an async task): in this host's namespace,
		// so started by this test.
		out, _ := exec.Command("ip", "netns", "pids", h.ns).Output()
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if out, err := exec.Command("ip", "netns", "del", h.ns).CombinedOutput(); err != nil {
			l.t.Errorf("ip netns del %s: %v %s", h.ns, err, out)
		}
		// The namespace goes once nothing holds it; its veth with it, or now.
		_ = exec.Command("ip", "link", "del", h.veth).Run()
	}
	if out, err := exec.Command("ip", "link", "del", l.bridge).CombinedOutput(); err != nil {
		l.t.Errorf("ip link del %s: %v %s", l.bridge, err, out)
	}
}

// startServiceManager serves the hosts' switchyard-test-svc calls on the
// bridge address: /ACTION/UNIT, the host known by its source address.
func (l *lab) startServiceManager() {
	ln, err := net.Listen("tcp", subnet+"1:0")
	if err != nil {
		l.t.Fatal(err)
	}
	l.svcAddr = ln.Addr().String()
	l.svc = &http.Server{Handler: http.HandlerFunc(l.serveUnit), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = l.svc.Serve(ln) }()
}

func (l *lab) serveUnit(w http.ResponseWriter, r *http.Request) {
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	var h *host
	for _, c := range l.hosts {
		if c.addr == ip {
			h = c
		}
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if h == nil || len(parts) != 2 {
		http.Error(w, "unknown host or path "+r.URL.Path, http.StatusBadRequest)
		return
	}
	msg, err := h.service(parts[0], parts[1])
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, msg)
}

// service does what systemctl would: start, stop (SIGTERM, SIGKILL after
// TimeoutStopSec), restart, status.
func (h *host) service(action, name string) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := h.units[name]
	up := u != nil && u.running()
	switch action {
	case "status":
		if up {
			return "active", nil
		}
		return "inactive", nil
	case "start":
		if up {
			return "ok: active", nil
		}
		return h.start(name)
	case "stop":
		if !up {
			return "ok: inactive", nil
		}
		u.stop()
		return "changed: stopped", nil
	case "restart":
		if up {
			u.stop()
		}
		return h.start(name)
	}
	return "", fmt.Errorf("unknown action %q", action)
}

func (u *unit) stop() {
	_ = u.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-u.done:
	case <-time.After(u.stopTimeout):
		_ = u.cmd.Process.Kill()
		<-u.done
	}
}

// unitFile is what the test takes from an installed unit.
type unitFile struct {
	execStart   []string
	user, group string
	env         []string
	nofile      string
	stopTimeout time.Duration
}

// readUnit parses the [Service] section of an installed unit.
func (h *host) readUnit(name string) (*unitFile, error) {
	f, err := os.Open(filepath.Join(h.upper, "etc/systemd/system", name+".service"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	u := &unitFile{stopTimeout: 90 * time.Second}
	section, cont := "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cont != "" {
			line, cont = cont+" "+line, ""
		}
		if strings.HasSuffix(line, `\`) {
			cont = strings.TrimSuffix(line, `\`)
			continue
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			section = line
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section != "[Service]" {
			continue
		}
		switch k {
		case "ExecStart":
			u.execStart = strings.Fields(v)
		case "User":
			u.user = v
		case "Group":
			u.group = v
		case "Environment":
			u.env = append(u.env, strings.Fields(v)...)
		case "LimitNOFILE":
			u.nofile = v
		case "TimeoutStopSec":
			s, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("%s: TimeoutStopSec=%s", name, v)
			}
			u.stopTimeout = time.Duration(s) * time.Second
		}
	}
	if len(u.execStart) == 0 || u.user == "" || u.nofile == "" {
		return nil, fmt.Errorf("%s: want ExecStart, User and LimitNOFILE", name)
	}
	return u, sc.Err()
}

// lookupID finds a user's or group's numeric id in the host's own
// /etc/passwd or /etc/group (written by the playbook into the overlay).
func (h *host) lookupID(file, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(h.upper, "etc", file))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Split(line, ":"); len(f) > 3 && f[0] == name {
			return f[2], nil
		}
	}
	return "", fmt.Errorf("%s not in the host's /etc/%s", name, file)
}

// start runs the unit's ExecStart inside the host: its network and mount
// namespaces and root (nsenter on sshd), with the unit's file limit, user,
// group and environment. nsenter, prlimit, setpriv and env all exec, so
// the PID is the service's.
func (h *host) start(name string) (string, error) {
	uf, err := h.readUnit(name)
	if err != nil {
		return "", err
	}
	uid, err := h.lookupID("passwd", uf.user)
	if err != nil {
		return "", err
	}
	gid, err := h.lookupID("group", uf.group)
	if err != nil {
		return "", err
	}
	// LimitNOFILE, but no more than this process's hard limit: raising it
	// takes CAP_SYS_RESOURCE, which a test machine may not grant.
	nofile, err := strconv.ParseUint(uf.nofile, 10, 64)
	if err != nil {
		return "", fmt.Errorf("%s: LimitNOFILE=%s", name, uf.nofile)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Max < nofile {
		nofile = lim.Max
	}
	n := strconv.FormatUint(nofile, 10)
	args := []string{"-t", strconv.Itoa(h.sshd.Process.Pid), "-m", "-n", "-r", "-w", "--",
		"prlimit", "--nofile=" + n + ":" + n, "--",
		"setpriv", "--reuid=" + uid, "--regid=" + gid, "--clear-groups", "--",
		"env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	args = append(append(args, uf.env...), uf.execStart...)
	cmd := exec.Command("nsenter", args...)
	logf, err := os.OpenFile(filepath.Join(h.dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return "", err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "--- %s: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(uf.execStart, " "))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return "", err
	}
	u := &unit{cmd: cmd, done: make(chan struct{}), stopTimeout: uf.stopTimeout}
	go func() {
		_ = cmd.Wait()
		close(u.done)
	}()
	h.units[name] = u
	return "changed: started pid " + strconv.Itoa(cmd.Process.Pid), nil
}

// pid is the running unit's PID, 0 when it is not running.
func (h *host) pid(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if u := h.units[name]; u != nil && u.running() {
		return u.cmd.Process.Pid
	}
	return 0
}
