package server

import (
	"errors"
	"strings"
	"testing"

	"github.com/switchyard-gw/switchyard/router"
)

var testRule = router.Rule{Name: "v21", Percent: 10, Labels: map[string]string{"version": "2.1"}}

// TestCanaryConfig: canary rules need a cluster and are validated with
// the rest of the config, every problem named.
func TestCanaryConfig(t *testing.T) {
	cfg := Config{Canary: []router.Rule{testRule}}.provision()
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "canary rules need a cluster") {
		t.Fatalf("rules without a cluster: %v", err)
	}
	bad := testRule
	bad.Percent = 0
	cfg = Config{Cluster: &ClusterConfig{}, LinkKeys: [][]byte{[]byte("k")},
		Canary: []router.Rule{bad, testRule}}.provision()
	err := cfg.Validate()
	if !errors.Is(err, router.ErrInvalidRule) || !strings.Contains(err.Error(), "percent 0") ||
		!strings.Contains(err.Error(), "duplicate name") {
		t.Fatalf("bad rules: %v", err)
	}
	if _, err := New(cfg); err == nil {
		t.Fatal("New accepted bad rules")
	}
}

// TestSetRulesWithoutCluster: a gateway without a ring refuses rules and
// keeps none.
func TestSetRulesWithoutCluster(t *testing.T) {
	g := startGateway(t, Config{})
	if err := g.SetRules([]router.Rule{testRule}); !errors.Is(err, ErrNoCluster) {
		t.Fatalf("SetRules: %v", err)
	}
	if len(g.Rules()) != 0 {
		t.Fatal("rules kept")
	}
}

func TestCloneRules(t *testing.T) {
	in := []router.Rule{{Name: "a", Match: map[string]string{"m": "x"}, Percent: 1, Labels: map[string]string{"v": "1"}}}
	out := cloneRules(in)
	out[0].Match["m"], out[0].Labels["v"] = "y", "2"
	if in[0].Match["m"] != "x" || in[0].Labels["v"] != "1" || cloneRules(nil) != nil {
		t.Fatal("cloneRules shares maps")
	}
}
