package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/switchyard-gw/switchyard"

// allowed lists, for each package, the project packages it may depend on
// (directly or not). Packages not listed may not exist yet; a new package
// must be added here before it can pass. internal/keyedmac (stdlib only)
// comes with protocol, which verifies auth tokens with it.
var allowed = map[string][]string{
	"protocol":                 {"internal/keyedmac"},
	"internal/keyedmac":        {},
	"internal/timewheel":       {},
	"internal/procstat":        {},
	"internal/admin":           {},
	"internal/trace":           {},
	"internal/proxyproto":      {},
	"internal/rawio":           {},
	"internal/rawio/rawiotest": {},
	"cluster":                  {"protocol", "internal/keyedmac"},
	"router":                   {"protocol", "internal/keyedmac"},
	"server":                   {"protocol", "cluster", "router", "internal/timewheel", "server/remote", "internal/admin", "internal/trace", "internal/proxyproto", "internal/rawio", "internal/keyedmac"},
	"server/remote":            {"protocol", "router", "internal/admin", "internal/rawio", "internal/keyedmac"},
	"backend":                  {"protocol", "cluster", "router", "internal/timewheel", "internal/admin", "internal/trace", "internal/rawio", "internal/keyedmac"},
	"client":                   {"protocol", "internal/keyedmac"},
	"backend/backendtest":      {"protocol", "internal/keyedmac"},
	"examples/echo":            {"protocol", "backend", "cluster", "router", "internal/admin", "internal/trace", "internal/rawio", "internal/keyedmac"},
	"examples/counter":         {"protocol", "backend", "cluster", "router", "internal/admin", "internal/trace", "internal/rawio", "internal/keyedmac"},
	"examples/rooms":           {"protocol", "backend", "cluster", "router", "internal/admin", "internal/trace", "internal/rawio", "internal/keyedmac"},
	"internal/config":          {"protocol", "cluster", "router", "server", "server/remote", "backend", "internal/timewheel", "internal/admin", "internal/trace", "internal/proxyproto", "internal/rawio", "internal/keyedmac"},
}

func TestImportRules(t *testing.T) {
	for pkg, ok := range allowed {
		out, err := exec.Command("go", "list", "-deps", module+"/"+pkg).CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "no required module provides") {
				continue // not written yet
			}
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		permitted := map[string]bool{pkg: true}
		for _, p := range ok {
			permitted[p] = true
		}
		for _, dep := range strings.Fields(string(out)) {
			rel, found := strings.CutPrefix(dep, module+"/")
			if !found {
				continue
			}
			if !permitted[rel] {
				t.Errorf("%s imports %s, which docs/architecture.md does not allow", pkg, rel)
			}
		}
	}
}
