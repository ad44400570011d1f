package router

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"github.com/switchyard-gw/switchyard/protocol"
)

// Canary rules (gray release by device cohort). A Rule selects devices by
// their HELLO tags and a sticky percentage of device ids and places them
// on the ring's shards that carry the rule's labels:
//
//	device ──tags match?──▶ in the rule's percent? ──▶ shards with the rule's labels ──bounded-load ring──▶ shard
//	   │ no rule selects it                                   │ none in the ring (counted: Fallback)
//	   └──────────────────────▶ default placement ◀───────────┘
//
// The default placement is the consistent placement over the ring's shards
// that no rule targets (a shard is a rule's target when its labels include
// all of the rule's labels): a canary shard gets its cohort and nothing
// else, and starting or stopping a canary shard moves no device outside
// the cohort. When every shard of the ring is some rule's target, the
// default placement is the ring owner over all of them (there is nowhere
// else to go).
//
// Everything is a pure function of the rules, the ring and the device's
// id and tags, so every gateway with the same rules and ring places a
// device on the same shard: the percentage hash is xxhash64 seeded with
// the rule's name (independent of the ring's hash, and of every other
// rule's), and the target and default placements are Rings built from a
// subset of the ring's shards with the ring's Config.

// Rule is one canary rule. The gateway's config file holds a list of them
// under the key canary:
//
//	canary:
//	  - {name: v21, match: {model: x1}, percent: 10, labels: {version: "2.1"}}
type Rule struct {
	// Name identifies the rule in logs and metrics and salts its
	// percentage hash: a device's draw is the same whatever the percent,
	// so widening a rule (1 → 10) keeps the devices it already had, and
	// renaming a rule draws a new cohort. A token (ValidToken), unique
	// among the rules.
	Name string `yaml:"name" json:"name"`
	// Match selects devices whose HELLO tags include all of these
	// (key and value equal). Empty: every device.
	Match map[string]string `yaml:"match,omitempty" json:"match,omitempty"`
	// Percent is the share of the matching devices selected, by a sticky
	// hash of the device id: 0 < Percent ≤ 100, fractions allowed (0.5).
	Percent float64 `yaml:"percent" json:"percent"`
	// Labels are the labels a shard must carry (all of them) to take the
	// selected devices. Required.
	Labels map[string]string `yaml:"labels" json:"labels"`
}

// ErrInvalidRule: a canary rule is malformed (NewRules names each one).
var ErrInvalidRule = errors.New("router: invalid canary rule")

// Placement is where a Placer put a device, and why.
type Placement struct {
	// Shard is the shard chosen.
	Shard Shard
	// Rule is the name of the canary rule that selected the device; ""
	// for the default placement.
	Rule string
	// Fallback: Rule selected the device but no shard of the ring carries
	// its labels, so the device went to the default placement.
	Fallback bool
}

// Explainer is a Placer that also says which rule placed a device (the
// Placer NewRules returns is one). Router.Placement uses it.
type Explainer interface {
	Placer
	Explain(deviceID string, tags map[string]string, r *Ring) (Placement, error)
}

// rule is a Rule ready to match.
type rule struct {
	Rule
	seed      uint64 // seeds the percentage hash
	threshold uint64 // the device is in when its hash >> 11 is below (of 2^53)
}

// Rules is the canary Placer (NewRules). Safe for concurrent use; Place
// takes no lock once the placements of a ring are built.
type Rules struct {
	rules []rule
	// built holds the target and default rings of the last ring seen;
	// rebuilt (under mu) when Place is given another ring.
	built atomic.Pointer[ruleRings]
	mu    sync.Mutex
}

// ruleRings are the placements derived from one ring.
type ruleRings struct {
	fp      uint64  // the ring's Fingerprint
	def     *Ring   // the default placement
	targets []*Ring // per rule: its target shards; nil when the ring has none
}

var _ Explainer = (*Rules)(nil)

// NewRules validates rules and returns the Placer that applies them, in
// order (the first rule that selects a device places it). Every problem
// is named at once, each wrapping ErrInvalidRule: a bad or duplicate
// name, a percent outside (0, 100], missing or invalid labels, an empty
// match key. No rules: the Placer is Owner.
func NewRules(rules []Rule) (Placer, error) {
	if err := ValidateRules(rules); err != nil {
		return nil, err
	}
	if len(rules) == 0 {
		return Owner, nil
	}
	p := &Rules{rules: make([]rule, len(rules))}
	for i, r := range rules {
		r.Match, r.Labels = cloneMap(r.Match), cloneMap(r.Labels)
		p.rules[i] = rule{Rule: r, seed: xxhash.Sum64String("switchyard-canary/" + r.Name),
			threshold: uint64(math.Round(r.Percent / 100 * (1 << 53)))}
	}
	return p, nil
}

// ValidateRules checks rules as NewRules does, without building them.
func ValidateRules(rules []Rule) error {
	var errs []error
	seen := map[string]bool{}
	for i, r := range rules {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%w %d (%q): %s", ErrInvalidRule, i, r.Name, fmt.Sprintf(format, args...)))
		}
		switch {
		case !ValidToken(r.Name):
			bad("name: want 1-%d characters of A-Z a-z 0-9 . _ -", MaxLabelLen)
		case seen[r.Name]:
			bad("duplicate name")
		}
		seen[r.Name] = true
		if !(r.Percent > 0 && r.Percent <= 100) { // NaN too
			bad("percent %v: want 0 < percent <= 100 (100: every matching device; remove the rule for none)", r.Percent)
		}
		if len(r.Labels) == 0 {
			bad("labels: required (the shards that take the selected devices)")
		} else if err := ValidateLabels(r.Labels); err != nil {
			bad("labels: %v", err)
		}
		if len(r.Match) > protocol.MaxTags {
			bad("match: %d tags, a HELLO carries at most %d", len(r.Match), protocol.MaxTags)
		}
		if _, ok := r.Match[""]; ok {
			bad("match: empty tag name")
		}
	}
	return errors.Join(errs...)
}

func cloneMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// Place returns the shard Explain chooses.
func (p *Rules) Place(deviceID string, tags map[string]string, r *Ring) (Shard, error) {
	pl, err := p.Explain(deviceID, tags, r)
	return pl.Shard, err
}

// Explain places a device: the first rule that selects it puts it on its
// target shards (or, when the ring has none, on the default placement,
// Fallback); a device no rule selects goes to the default placement.
// ErrNoShards for an empty ring.
func (p *Rules) Explain(deviceID string, tags map[string]string, r *Ring) (Placement, error) {
	if r.Len() == 0 {
		return Placement{}, ErrNoShards
	}
	rr := p.rings(r)
	for i := range p.rules {
		ru := &p.rules[i]
		if !ru.selects(deviceID, tags) {
			continue
		}
		if t := rr.targets[i]; t != nil {
			s, err := t.Owner(deviceID)
			return Placement{Shard: s, Rule: ru.Name}, err
		}
		s, err := rr.def.Owner(deviceID)
		return Placement{Shard: s, Rule: ru.Name, Fallback: true}, err
	}
	s, err := rr.def.Owner(deviceID)
	return Placement{Shard: s}, err
}

// selects reports whether the rule selects the device: every Match tag
// equal, and the device's draw within Percent.
func (ru *rule) selects(deviceID string, tags map[string]string) bool {
	return hasLabels(tags, ru.Match) && ru.draw(deviceID)>>11 < ru.threshold
}

// draw is the device's sticky draw for the rule: xxhash64 of its id
// seeded with the rule's seed. It allocates nothing.
func (ru *rule) draw(deviceID string) uint64 {
	var d xxhash.Digest
	d.ResetWithSeed(ru.seed)
	_, _ = d.WriteString(deviceID)
	return d.Sum64()
}

// rings returns the placements derived from r, building them on the
// first call with a ring of another fingerprint.
func (p *Rules) rings(r *Ring) *ruleRings {
	fp := r.Fingerprint()
	if b := p.built.Load(); b != nil && b.fp == fp {
		return b
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if b := p.built.Load(); b != nil && b.fp == fp {
		return b
	}
	b := p.build(r)
	p.built.Store(b)
	return b
}

// build derives the target rings of every rule and the default ring from
// r. Subsets of a valid ring's shards always make valid rings (names
// unique, fewer shards than partitions), so NewRing cannot fail here.
func (p *Rules) build(r *Ring) *ruleRings {
	b := &ruleRings{fp: r.Fingerprint(), targets: make([]*Ring, len(p.rules))}
	canary := make([]bool, r.Len())
	for i := range p.rules {
		var sub []Shard
		for j, s := range r.shards {
			if hasLabels(s.Labels, p.rules[i].Labels) {
				sub, canary[j] = append(sub, s), true
			}
		}
		b.targets[i] = subRing(r, sub)
	}
	var rest []Shard
	for j, s := range r.shards {
		if !canary[j] {
			rest = append(rest, s)
		}
	}
	b.def = r
	if len(rest) > 0 && len(rest) < r.Len() {
		b.def = subRing(r, rest)
	}
	return b
}

// subRing is the ring of shards (a subset of r's) under r's config; nil
// for none.
func subRing(r *Ring, shards []Shard) *Ring {
	if len(shards) == 0 {
		return nil
	}
	if len(shards) == r.Len() {
		return r
	}
	sub, err := NewRing(r.cfg, shards)
	if err != nil {
		return r // cannot happen (see build); the ring owner is a safe answer
	}
	return sub
}

// Rules returns a copy of the rules, in order.
func (p *Rules) Rules() []Rule {
	out := make([]Rule, len(p.rules))
	for i, r := range p.rules {
		out[i] = r.Rule
		out[i].Match, out[i].Labels = cloneMap(r.Match), cloneMap(r.Labels)
	}
	return out
}
