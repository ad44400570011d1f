package main

import (
	"fmt"
	"strings"

	"github.com/switchyard-gw/switchyard/router"
)

// parseLabels parses `--labels version=2.1,zone=a` into a shard's labels:
// comma-separated key=value pairs, blanks around them ignored, each key
// once, keys and values tokens (router.ValidateLabels). "" is no labels.
func parseLabels(s string) (map[string]string, error) {
	labels := map[string]string{}
	for _, kv := range splitList(s) {
		k, v, ok := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok {
			return nil, fmt.Errorf("--labels: %q: want key=value", kv)
		}
		if _, dup := labels[k]; dup {
			return nil, fmt.Errorf("--labels: %q given twice", k)
		}
		labels[k] = v
	}
	if err := router.ValidateLabels(labels); err != nil {
		return nil, fmt.Errorf("--labels: %w", err)
	}
	if len(labels) == 0 {
		return nil, nil
	}
	return labels, nil
}
