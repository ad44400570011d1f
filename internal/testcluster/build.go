package testcluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// binary is the switchyard binary built once per test binary.
var binary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Binary builds ./cmd/switchyard once per test binary (go build, into a
// temporary directory) and returns its path. RemoveBinary deletes it;
// call that from TestMain after m.Run.
func Binary(t testing.TB) string {
	t.Helper()
	binary.once.Do(buildBinary)
	if binary.err != nil {
		t.Fatalf("testcluster: %v", binary.err)
	}
	return binary.path
}

func buildBinary() {
	root, err := moduleRoot()
	if err != nil {
		binary.err = err
		return
	}
	binary.dir, err = os.MkdirTemp("", "testcluster-bin-")
	if err != nil {
		binary.err = err
		return
	}
	binary.path = filepath.Join(binary.dir, "switchyard")
	cmd := exec.Command("go", "build", "-o", binary.path, "./cmd/switchyard")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		binary.err = fmt.Errorf("go build ./cmd/switchyard: %v\n%s", err, out)
	}
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("go env GOMOD: not inside a module")
	}
	return filepath.Dir(mod), nil
}

// RemoveBinary deletes the directory Binary built into (nothing when it
// did not build).
func RemoveBinary() {
	if binary.dir != "" {
		_ = os.RemoveAll(binary.dir)
	}
}
