// Package prometheus holds Switchyard's Prometheus files and their test:
// alerts.yml (the alert rules, docs/operations.md "Alerts"), prometheus.yml
// (an example scrape configuration with the job names the rules and
// deploy/grafana/switchyard.json expect) and TestPrometheus, which runs
// Debian's prometheus binary against two gateways and two shards (real
// processes) under a little load and checks the key series, every
// dashboard panel query and every alert expression through its query API,
// and runs `promtool check rules` on alerts.yml.
//
// The prometheus package (Debian) provides both binaries; `make test`
// installs it and sets SWITCHYARD_REQUIRE_PROMETHEUS=1, so that a missing
// binary fails there instead of skipping. The test never uses the
// package's systemd service: it runs the binary itself, on a free
// loopback port, with a temporary configuration and storage directory,
// and kills it by its PID.
//
// With SWITCHYARD_DASHBOARD_SVG=DIR the test also runs the load longer
// (SWITCHYARD_DASHBOARD_LOAD, default 3m; a third shard joins halfway, so
// that sessions move) and draws every dashboard panel from that run into
// DIR (promq.PlotDashboard): the pictures of docs/operations.md
// "Dashboard".
package prometheus
