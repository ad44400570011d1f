// Package promq reads Switchyard's monitoring files and asks a Prometheus
// about them: the HTTP query API (/api/v1/query, /api/v1/query_range), the
// panel queries of deploy/grafana/switchyard.json with Grafana's template
// variables substituted, the expressions of deploy/prometheus/alerts.yml,
// and an SVG rendering of the dashboard's panels from range queries (for
// docs/operations.md, where no Grafana renders them).
//
// Users: deploy/prometheus's test (every panel and alert expression run
// against a real Prometheus scraping a real cluster) and tools/promplot
// (the pictures). Standard library only, plus go.yaml.in/yaml/v3 for the
// rule file.
package promq
