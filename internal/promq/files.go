package promq

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Panel is one graph of the dashboard with its queries, in dashboard
// order, under the title of the row above it.
type Panel struct {
	Row, Title, Unit string
	Targets          []Target
}

// Target is one query of a panel: its PromQL, with Grafana's template
// variables still in it, and its legend format ({{label}} placeholders).
type Target struct {
	Expr, Legend string
}

// LoadDashboard reads a Grafana dashboard's JSON and returns its graph
// panels (rows flattened: a collapsed row's panels too).
func LoadDashboard(path string) ([]Panel, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	type panel struct {
		Type        string  `json:"type"`
		Title       string  `json:"title"`
		Panels      []panel `json:"panels"`
		FieldConfig struct {
			Defaults struct {
				Unit string `json:"unit"`
			} `json:"defaults"`
		} `json:"fieldConfig"`
		Targets []struct {
			Expr         string `json:"expr"`
			LegendFormat string `json:"legendFormat"`
		} `json:"targets"`
	}
	var d struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []Panel
	row := ""
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				row = p.Title
				walk(p.Panels)
				continue
			}
			q := Panel{Row: row, Title: p.Title, Unit: p.FieldConfig.Defaults.Unit}
			for _, t := range p.Targets {
				if t.Expr == "" {
					continue
				}
				q.Targets = append(q.Targets, Target{Expr: t.Expr, Legend: t.LegendFormat})
			}
			out = append(out, q)
		}
	}
	walk(d.Panels)
	for _, p := range out {
		if len(p.Targets) == 0 {
			return nil, fmt.Errorf("%s: panel %q has no PromQL target", path, p.Title)
		}
	}
	return out, nil
}

// Vars are the template variables a dashboard query is run with outside
// Grafana: every gateway and shard (the variables' "All", regex .*), and a
// rate window of 30 s for $__rate_interval.
func Vars(rateInterval string) map[string]string {
	return map[string]string{"gateway": ".*", "shard": ".*", "__rate_interval": rateInterval}
}

var varRE = regexp.MustCompile(`\$\{(\w+)\}|\$(\w+)`)

// Expand substitutes $name and ${name} in expr from vars; a variable not
// in vars is an error (a typo in the dashboard would otherwise reach
// Prometheus as a parse error far from its cause).
func Expand(expr string, vars map[string]string) (string, error) {
	var missing []string
	out := varRE.ReplaceAllStringFunc(expr, func(m string) string {
		name := strings.Trim(m, "${}")
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("promq: %q: unknown template variables %v", expr, missing)
	}
	return out, nil
}

// Rule is one alerting or recording rule of a Prometheus rule file.
type Rule struct {
	Group, Name, Expr string // Name: the alert or record name
}

// LoadRules reads a Prometheus rule file.
func LoadRules(path string) ([]Rule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []Rule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out = append(out, Rule{Group: g.Name, Name: r.Alert + r.Record, Expr: strings.TrimSpace(r.Expr)})
		}
	}
	return out, nil
}

// metricRE matches the names of the series an expression reads: ours, the
// process and Go runtime ones, and up. Label values are quoted and
// function names are not followed by these prefixes, so it does not catch
// either.
var metricRE = regexp.MustCompile(`\b(?:switchyard|process|go)_[a-z0-9_]+\b|\bup\b`)

// MetricNames returns the series names expr reads, sorted, once each.
func MetricNames(expr string) []string {
	seen := map[string]bool{}
	// Strip quoted strings first: a label value like "switchyard-gateway"
	// or a regex must not count as a name.
	unq := regexp.MustCompile(`"(?:[^"\\]|\\.)*"`).ReplaceAllString(expr, `""`)
	for _, m := range metricRE.FindAllString(unq, -1) {
		seen[m] = true
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}
