package cluster

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeriveKeysVectors pins the gossip-key derivation: a change here
// would split every running cluster between old and new binaries. The
// vectors were computed independently:
// printf 'switchyard-gossip\0<secret>' | sha256sum.
func TestDeriveKeysVectors(t *testing.T) {
	secrets := [][]byte{[]byte("0123456789abcdef"), []byte("another cluster secret, rotated in")}
	want := []string{
		"f49ff71388baad618b14599e274b1f1fc6dbe34f478859805d1aea825db6786d",
		"e4830451eb6a1f34494cd47ad186aeb53325b1fb0aabd93b1de460495b227706",
	}
	gossip, links := DeriveKeys(secrets)
	if len(gossip) != len(want) || len(links) != len(secrets) {
		t.Fatalf("DeriveKeys: %d gossip and %d link keys, want %d", len(gossip), len(links), len(want))
	}
	for i, w := range want {
		if got := hex.EncodeToString(gossip[i]); got != w {
			t.Errorf("gossip key %d = %s, want %s", i, got, w)
		}
		if !bytes.Equal(links[i], secrets[i]) {
			t.Errorf("link key %d = %q, want the secret itself", i, links[i])
		}
	}
	if g, l := DeriveKeys(nil); g != nil || l != nil {
		t.Errorf("DeriveKeys(nil) = %v, %v", g, l)
	}
}

func TestReadKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keys, err := ReadKeyFile(write("ok", "\n0123456789abcdef\r\n\nanother cluster secret\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || string(keys[0]) != "0123456789abcdef" || string(keys[1]) != "another cluster secret" {
		t.Fatalf("keys = %q", keys)
	}
	for _, tc := range []struct{ name, content, want string }{
		{"empty", "\n\n", "holds no secret"},
		{"short", "0123456789abcdef\nshort\n", "line 2: 5 bytes, want at least 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadKeyFile(write(tc.name, tc.content))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ReadKeyFile = %v, want an error with %q", err, tc.want)
			}
		})
	}
	if _, err := ReadKeyFile(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing file read without error")
	}
}
