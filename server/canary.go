package server

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/switchyard-gw/switchyard/router"
)

// Canary rules on a running gateway (docs/operations.md "Canary
// roll-out"). The rules are the router's Placer: every placement of a
// session (open, resume, the mover's passes after a ring change, crash
// recovery) goes through it with the device's HELLO tags, which the shard
// side keeps with the session's binding for the connection's life.
// Changing the rules is a placement change like a ring change: the mover
// walks the live sessions and moves, by the planned-move path, exactly
// those whose placement changed, with their devices connected.

// ErrNoCluster: canary rules place devices on the ring's shards; a gateway
// without Config.Cluster has no ring.
var ErrNoCluster = errors.New("server: canary rules need a cluster")

// SetRules replaces the canary rules. Invalid rules change nothing and
// return an error naming every problem (wrapping router.ErrInvalidRule).
// Valid ones apply to every placement from now on, and the live sessions
// whose placement changed move to their new shard at MoveRate, by the
// same path as after a ring change. nil or empty removes every rule: the
// canary's sessions go back to their ring owners.
func (g *Gateway) SetRules(rules []router.Rule) error {
	if g.ring == nil {
		return ErrNoCluster
	}
	p, err := router.NewRules(rules)
	if err != nil {
		return fmt.Errorf("server: canary: %w", err)
	}
	g.rulesMu.Lock()
	g.rules = cloneRules(rules)
	g.ring.SetPlacer(p)
	g.rulesMu.Unlock()
	names := make([]string, len(rules))
	for i, r := range rules {
		names[i] = fmt.Sprintf("%s=%g%%", r.Name, r.Percent)
	}
	g.log.Info("canary rules set", "rules", names)
	g.Rebalance()
	return nil
}

// Rules returns a copy of the canary rules in force.
func (g *Gateway) Rules() []router.Rule {
	g.rulesMu.Lock()
	defer g.rulesMu.Unlock()
	return cloneRules(g.rules)
}

// cloneRules copies rules deeply (nil for none).
func cloneRules(rules []router.Rule) []router.Rule {
	if len(rules) == 0 {
		return nil
	}
	out := slices.Clone(rules)
	for i := range out {
		out[i].Match, out[i].Labels = maps.Clone(out[i].Match), maps.Clone(out[i].Labels)
	}
	return out
}
