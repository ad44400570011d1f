package testcluster

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
)

// TestFileLimitMaxConns runs the gateway binary with a file limit of 256
// (prlimit): its default max_conns leaves a reserve below that limit, so
// the devices past it get ERROR 503 right after accept (not a silent wait
// in the backlog) while /metrics still answers; and the binary applied
// the netpoll tuning (switchyard_netpoll_tuned 1).
func TestFileLimitMaxConns(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("needs prlimit(1) (util-linux) to start the gateway with a low file limit")
	}
	const nofile = 256
	listen, err := freeAddr(false)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := freeAddr(false)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "gateway.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(prlimit, "--nofile="+strconv.Itoa(nofile)+":"+strconv.Itoa(nofile), "--",
		Binary(t), "gateway", "--listen", listen, "--admin", admin)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) // prlimit execs the gateway: same PID
	logTail := func() string { b, _ := os.ReadFile(logPath); return tail(string(b), 20) }
	poll.Until(t, poll.Patience, func() error { return adminGet(context.Background(), admin, "/healthz") })

	metrics := func() (int, string) {
		resp, err := http.Get("http://" + admin + "/metrics")
		if err != nil {
			t.Fatalf("GET /metrics: %v\n%s", err, logTail())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if _, body := metrics(); !strings.Contains(body, "\nswitchyard_netpoll_tuned 1\n") {
		t.Errorf("the binary did not tune netpoll (switchyard_netpoll_tuned):\n%s", logTail())
	}
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "GC policy: GOGC follows the live heap") {
		t.Errorf("the binary did not start its GC policy (cmd/switchyard gcPolicy):\n%s", logTail())
	}

	var refused bool
	for i := 0; i < nofile && !refused; i++ {
		nc, err := net.Dial("tcp", listen)
		if err != nil {
			t.Fatalf("device %d: %v", i, err)
		}
		defer nc.Close()
		p, _ := protocol.EncodeHello(&protocol.Hello{V: 1, ID: "fd-" + strconv.Itoa(i)})
		if _, err := nc.Write(protocol.AppendFrame(nil, protocol.TypeHello, 0, 0, p)); err != nil {
			t.Fatalf("device %d: %v", i, err)
		}
		d := &rawDevice{nc}
		f, err := d.read(poll.Patience)
		switch {
		case err != nil:
			t.Fatalf("device %d: no answer (a connection left waiting at the file limit?): %v\n%s", i, err, logTail())
		case f.Type == protocol.TypeWelcome:
		case f.Type == protocol.TypeError:
			var e protocol.ErrorMsg
			if err := protocol.Unmarshal(f.Payload, &e); err != nil || e.Code != protocol.CodeUnavailable {
				t.Fatalf("device %d: ERROR %+v %v, want 503", i, e, err)
			}
			if i < nofile/4 {
				t.Fatalf("device %d refused already: max_conns far below the file limit", i)
			}
			refused = true
		default:
			t.Fatalf("device %d: got %v", i, f.Type)
		}
	}
	if !refused {
		t.Fatalf("%d devices taken with a file limit of %d", nofile, nofile)
	}
	code, body := metrics() // at the limit: the admin listener still accepts
	if code != http.StatusOK || !strings.Contains(body, `switchyard_connections_rejected_total{reason="max_conns"} 1`) {
		t.Fatalf("/metrics at the limit: %d\n%s", code, body)
	}
}
