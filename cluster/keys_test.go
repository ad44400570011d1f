package cluster

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestSetKeysRotation rotates the key of a running cluster in the three
// documented rounds, checking after each that the cluster still talks and
// at the end that the old key no longer gets in.
func TestSetKeysRotation(t *testing.T) {
	oldK, newK := testKey(1), testKey(2)
	nodes := startCluster(t, 3, func(c *Config) { c.Keys = [][]byte{oldK} })
	rounds := [][][]byte{{oldK, newK}, {newK, oldK}, {newK}}
	for i, keys := range rounds {
		for _, n := range nodes {
			if err := n.SetKeys(keys); err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
		}
		// A metadata change must still reach everyone.
		v := string(rune('a' + i))
		if err := nodes[0].UpdateMeta(func(m *Meta) { m.Version = v }); err != nil {
			t.Fatalf("round %d: update: %v", i, err)
		}
		waitFor(t, patience, func() error {
			for _, n := range nodes[1:] {
				if m, _ := n.Member(nodes[0].Name()); m.Meta.Version != v {
					return errors.New(n.Name() + " missed the update")
				}
			}
			return nil
		})
	}
	if got := nodes[0].keyring.GetKeys(); len(got) != 1 || string(got[0]) != string(newK) {
		t.Fatalf("keyring after rotation: %d keys", len(got))
	}

	stale := newNode(t, "stale", func(c *Config) {
		c.Keys = [][]byte{oldK}
		c.Seeds = []string{nodes[0].Addr()}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := stale.Start(ctx); !errors.Is(err, ErrJoin) {
		t.Fatalf("old key after rotation: Start = %v, want ErrJoin", err)
	}
}

func TestSetKeysRefused(t *testing.T) {
	plain := newNode(t, "plain", func(c *Config) { c.Keys = nil })
	if err := plain.SetKeys([][]byte{testKey(3)}); err != nil {
		t.Fatalf("before Start: %v", err)
	}
	if len(plain.cfg.Keys) != 1 {
		t.Fatal("SetKeys before Start did not replace Config.Keys")
	}
	insecure := newNode(t, "insecure", func(c *Config) { c.Keys = nil })
	startNode(t, insecure)
	if err := insecure.SetKeys([][]byte{testKey(3)}); err == nil {
		t.Fatal("turning encryption on at run time should be refused")
	}
	if err := insecure.SetKeys([][]byte{[]byte("short")}); err == nil {
		t.Fatal("a short key should be refused")
	}
}
