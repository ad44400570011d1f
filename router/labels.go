package router

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Label limits. Shard labels travel in every shard's gossip metadata,
// which must fit in 512 bytes with everything else (cluster.MetaMaxSize),
// and rule names become metric label values: both stay short and plain.
const (
	// MaxLabels is the most labels one shard (or one rule) may carry.
	MaxLabels = 8
	// MaxLabelLen is the longest label key, label value or rule name.
	MaxLabelLen = 63
)

// ErrInvalidLabel: a label key or value, or a rule name, is empty, too
// long or has a character outside [A-Za-z0-9._-].
var ErrInvalidLabel = errors.New("router: invalid label")

// ValidateLabels checks shard (or rule) labels: at most MaxLabels, each key
// and value a token (see ValidToken). It names every bad one at once, in
// key order, each wrapping ErrInvalidLabel.
func ValidateLabels(labels map[string]string) error {
	var errs []error
	if len(labels) > MaxLabels {
		errs = append(errs, fmt.Errorf("%w: %d labels, at most %d", ErrInvalidLabel, len(labels), MaxLabels))
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !ValidToken(k) {
			errs = append(errs, fmt.Errorf("%w: key %q: want 1-%d characters of A-Z a-z 0-9 . _ -", ErrInvalidLabel, k, MaxLabelLen))
		}
		if v := labels[k]; !ValidToken(v) {
			errs = append(errs, fmt.Errorf("%w: %s=%q: want a value of 1-%d characters of A-Z a-z 0-9 . _ -", ErrInvalidLabel, k, v, MaxLabelLen))
		}
	}
	return errors.Join(errs...)
}

// ValidToken reports whether s is a valid label key, label value or rule
// name: 1 to MaxLabelLen characters of A-Z, a-z, 0-9, '.', '_' and '-'.
// That keeps labels printable in logs and flags ("version=2.1,zone=a"
// splits on ',' and '=' unambiguously) and rule names safe as metric
// label values.
func ValidToken(s string) bool {
	if s == "" || len(s) > MaxLabelLen {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}) < 0
}

// hasLabels reports whether have includes every label of want.
func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if w, ok := have[k]; !ok || w != v {
			return false
		}
	}
	return true
}
