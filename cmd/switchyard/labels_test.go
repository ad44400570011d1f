package main

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/switchyard-gw/switchyard/router"
)

func TestParseLabels(t *testing.T) {
	for in, want := range map[string]map[string]string{
		"":                      nil,
		"version=2.1":           {"version": "2.1"},
		" version=2.1 , zone=a": {"version": "2.1", "zone": "a"},
	} {
		got, err := parseLabels(in)
		if err != nil || !maps.Equal(got, want) {
			t.Errorf("parseLabels(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, why := range map[string]string{
		"version":         "want key=value",
		"version=":        "version=",
		"=2.1":            "key",
		"a=1,a=2":         "given twice",
		"version=2 1":     "version=",
		"v=1,zone=eu/w":   "zone=",
		"version=2.1;x=1": "version=",
	} {
		_, err := parseLabels(in)
		if err == nil || !strings.Contains(err.Error(), why) || !strings.HasPrefix(err.Error(), "--labels") {
			t.Errorf("parseLabels(%q) = %v, want an error about %q", in, err, why)
		}
		if strings.HasSuffix(why, "=") && !errors.Is(err, router.ErrInvalidLabel) {
			t.Errorf("parseLabels(%q): %v does not wrap ErrInvalidLabel", in, err)
		}
	}
}
