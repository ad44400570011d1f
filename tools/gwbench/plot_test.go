package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const plotDate = "2026-03-01T12:00:00Z"

// plotRun is one run of both scenarios on a target; a nil map leaves the
// scenario out.
func plotRun(target string, cpu, mem map[string]float64) []*Result {
	var out []*Result
	if cpu != nil {
		out = append(out, &Result{Scenario: "cpu", Target: target, Results: cpu, Date: plotDate})
	}
	if mem != nil {
		out = append(out, &Result{Scenario: "mem", Target: target, Results: mem, Date: plotDate})
	}
	return out
}

// plotResults: three runs per target, skewed so that median and mean
// differ; "haproxy" has no latency but children memory; "gw <&>" tests
// escaping.
func plotResults() []*Result {
	var rs []*Result
	for i, p50 := range []float64{100, 200, 900} { // median 200, mean 400
		rs = append(rs, plotRun("baseline",
			map[string]float64{"latency_p50_us": p50, "latency_p90_us": 800, "latency_p99_us": 5000, "latency_p999_us": 40000},
			map[string]float64{"bytes_per_session": []float64{10000, 10240, 50000}[i]})...) // median 10240
	}
	for i := range 3 {
		rs = append(rs, plotRun("gw <&>",
			map[string]float64{"latency_p50_us": 120, "latency_p90_us": 450, "latency_p99_us": 2300, "latency_p999_us": 95000},
			map[string]float64{"bytes_per_session": []float64{2048, 9000, 2048}[i]})...) // median 2048: ×0.20
	}
	for range 3 {
		rs = append(rs, plotRun("haproxy", nil,
			map[string]float64{"bytes_per_session": 5120, "children_rss_bytes_per_session": 20480})...) // ×0.50
	}
	return rs
}

// svgElem is a <rect> or <text> of a chart: its attributes and text.
type svgElem struct {
	name  string
	attrs map[string]string
	text  string
}

// parseSVG checks that svg is well-formed XML with an <svg> root and
// returns its rects and texts in document order.
func parseSVG(t *testing.T, svg []byte) []svgElem {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(svg))
	var out []svgElem
	var open []int // indexes into out of the <text> elements being read
	root := ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, svg)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = tok.Name.Local
			}
			if tok.Name.Local != "rect" && tok.Name.Local != "text" {
				continue
			}
			e := svgElem{name: tok.Name.Local, attrs: map[string]string{}}
			for _, a := range tok.Attr {
				e.attrs[a.Name.Local] = a.Value
			}
			out = append(out, e)
			if e.name == "text" {
				open = append(open, len(out)-1)
			}
		case xml.CharData:
			if len(open) > 0 {
				out[open[len(open)-1]].text += string(tok)
			}
		case xml.EndElement:
			if tok.Name.Local == "text" {
				open = open[:len(open)-1]
			}
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	return out
}

// withClass returns the elements of that class.
func withClass(es []svgElem, class string) []svgElem {
	var out []svgElem
	for _, e := range es {
		if e.attrs["class"] == class {
			out = append(out, e)
		}
	}
	return out
}

func texts(es []svgElem) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.text)
	}
	return out
}

func TestPlotLatencySVG(t *testing.T) {
	rs := plotResults()
	svg := latencySVG(rs, plotTargets(rs, ""))
	if svg == nil {
		t.Fatal("no latency chart")
	}
	es := parseSVG(t, svg)
	bars := withClass(es, "bar")
	if len(bars) != 2*4 { // haproxy has no latency
		t.Fatalf("%d bars, want 8 (2 targets × 4 percentiles)", len(bars))
	}
	if got, want := texts(withClass(es, "target")), []string{"baseline", "gw <&>"}; !slices.Equal(got, want) {
		t.Errorf("targets %q, want %q", got, want)
	}
	var keys []string
	for _, b := range bars[:4] {
		keys = append(keys, b.attrs["data-key"])
	}
	if want := []string{"p50", "p90", "p99", "p99.9"}; !slices.Equal(keys, want) {
		t.Errorf("bars of the first group %q, want %q", keys, want)
	}
	// The median of 100, 200, 900 is 200; the mean (400) must not show.
	if bars[0].attrs["data-value"] != "200" {
		t.Errorf("baseline p50 bar value %q, want the median 200", bars[0].attrs["data-value"])
	}
	values := texts(withClass(es, "value"))
	if !slices.Contains(values, "200µs") || slices.Contains(values, "400µs") {
		t.Errorf("value labels %q: want 200µs (median), not 400µs (mean)", values)
	}
	for _, want := range []string{"2.3ms", "95ms"} {
		if !slices.Contains(values, want) {
			t.Errorf("value labels %q lack %q", values, want)
		}
	}
	// Log scale: decades from 100µs (below the lowest bar) to 100ms.
	if got, want := texts(withClass(es, "tick")), []string{"100µs", "1ms", "10ms", "100ms"}; !slices.Equal(got, want) {
		t.Errorf("y ticks %q, want %q", got, want)
	}
	if got := len(withClass(es, "swatch")); got != 4 {
		t.Errorf("legend has %d entries, want 4", got)
	}
}

func TestPlotMemorySVG(t *testing.T) {
	rs := plotResults()
	targets := plotTargets(rs, "")
	svg := memorySVG(rs, targets, targets[0])
	if svg == nil {
		t.Fatal("no memory chart")
	}
	es := parseSVG(t, svg)
	bars := withClass(es, "bar")
	if len(bars) != 3 {
		t.Fatalf("%d bars, want 3", len(bars))
	}
	if bars[0].attrs["data-value"] != "10240" {
		t.Errorf("baseline bar value %q, want the median 10240", bars[0].attrs["data-value"])
	}
	if got, want := texts(withClass(es, "value")), []string{"10 KiB", "2 KiB", "5 KiB"}; !slices.Equal(got, want) {
		t.Errorf("value labels %q, want %q", got, want)
	}
	if got, want := texts(withClass(es, "ratio")), []string{"baseline", "×0.20", "×0.50"}; !slices.Equal(got, want) {
		t.Errorf("ratio labels %q, want %q", got, want)
	}
	kids := withClass(es, "children")
	if len(kids) != 1 || kids[0].attrs["data-target"] != "haproxy" || kids[0].attrs["data-value"] != "20480" {
		t.Fatalf("children segments %v, want one of 20480 on haproxy", kids)
	}
	if got := texts(withClass(es, "children-label")); !slices.Contains(got, "children") || !slices.Contains(got, "+20 KiB") {
		t.Errorf("children labels %q", got)
	}

	// Without children_rss_bytes_per_session: no segment, no legend.
	var plain []*Result
	for _, r := range rs {
		if r.Target != "haproxy" {
			plain = append(plain, r)
		}
	}
	es = parseSVG(t, memorySVG(plain, targets, "gw <&>"))
	if n, k := len(withClass(es, "bar")), len(withClass(es, "children")); n != 2 || k != 0 {
		t.Errorf("without children: %d bars and %d children segments, want 2 and 0", n, k)
	}
	if got, want := texts(withClass(es, "ratio")), []string{"×5.00", "baseline"}; !slices.Equal(got, want) {
		t.Errorf("ratio labels to gw %q, want %q", got, want)
	}
}

func TestPlotEscapesTargetNames(t *testing.T) {
	rs := plotResults()
	targets := plotTargets(rs, "")
	for name, svg := range map[string][]byte{
		"latency": latencySVG(rs, targets),
		"memory":  memorySVG(rs, targets, targets[0]),
	} {
		if bytes.Contains(svg, []byte("gw <&>")) || !bytes.Contains(svg, []byte("gw &lt;&amp;&gt;")) {
			t.Errorf("%s: target name not escaped", name)
		}
		es := parseSVG(t, svg)
		if !slices.Contains(texts(withClass(es, "target")), "gw <&>") {
			t.Errorf("%s: target label does not read back as %q", name, "gw <&>")
		}
	}
}

// writeResults writes rs as JSON lines, then extra lines.
func writeResults(t *testing.T, path string, rs []*Result, extra ...string) {
	t.Helper()
	var b bytes.Buffer
	for _, r := range rs {
		j, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(append(j, '\n'))
	}
	for _, l := range extra {
		b.WriteString(l + "\n")
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPlotSince runs the subcommand on two files: an older run (other
// values, and a target of its own) that --since must drop, and the
// current one with a blank and a broken line.
func TestPlotSince(t *testing.T) {
	dir := t.TempDir()
	var old []*Result
	for range 3 {
		for _, tgt := range []string{"baseline", "retired"} {
			for _, r := range plotRun(tgt, map[string]float64{"latency_p50_us": 5000}, map[string]float64{"bytes_per_session": 99999}) {
				r.Date = "2026-02-01T00:00:00Z"
				old = append(old, r)
			}
		}
	}
	writeResults(t, filepath.Join(dir, "old.jsonl"), old)
	writeResults(t, filepath.Join(dir, "new.jsonl"), plotResults(), "", "{not json", `{"scenario":"cpu"}`)
	out := filepath.Join(dir, "svg")
	var stdout, stderr bytes.Buffer
	err := plot([]string{"--in", filepath.Join(dir, "old.jsonl"), "--in", filepath.Join(dir, "new.jsonl"),
		"--out-dir", out, "--since", plotDate}, &stdout, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(out, "latency.svg") + "\n" + filepath.Join(out, "memory.svg") + "\n"
	if stdout.String() != want {
		t.Errorf("stdout %q, want %q", stdout.String(), want)
	}
	if !strings.Contains(stderr.String(), "skipped 2 unparsable") {
		t.Errorf("stderr %q does not count the 2 bad lines", stderr.String())
	}
	lat, err := os.ReadFile(filepath.Join(out, "latency.svg"))
	if err != nil {
		t.Fatal(err)
	}
	es := parseSVG(t, lat)
	if got := texts(withClass(es, "target")); slices.Contains(got, "retired") {
		t.Errorf("targets %q: old run not dropped", got)
	}
	if v := withClass(es, "bar")[0].attrs["data-value"]; v != "200" {
		t.Errorf("baseline p50 %s, want 200 (old runs at 5000 dropped)", v)
	}
	mem, err := os.ReadFile(filepath.Join(out, "memory.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(withClass(parseSVG(t, mem), "bar")); got != 3 {
		t.Errorf("memory: %d bars, want 3", got)
	}

	// Without --since the old runs count: the retired target appears.
	stdout.Reset()
	if err := plot([]string{"--in", filepath.Join(dir, "old.jsonl"), "--in", filepath.Join(dir, "new.jsonl"), "--out-dir", out}, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	mem, _ = os.ReadFile(filepath.Join(out, "memory.svg"))
	if got := texts(withClass(parseSVG(t, mem), "target")); !slices.Contains(got, "retired") {
		t.Errorf("without --since, targets %q lack the old run's", got)
	}
}

// TestPlotTargetsAndNoData: --targets picks and orders the targets (the
// first is the baseline); a chart without data is not written.
func TestPlotTargetsAndNoData(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "r.jsonl")
	writeResults(t, in, plotResults())
	var stdout bytes.Buffer
	if err := plot([]string{"--in", in, "--out-dir", dir, "--targets", "haproxy,baseline"}, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	mem, err := os.ReadFile(filepath.Join(dir, "memory.svg"))
	if err != nil {
		t.Fatal(err)
	}
	es := parseSVG(t, mem)
	if got, want := texts(withClass(es, "target")), []string{"haproxy", "baseline"}; !slices.Equal(got, want) {
		t.Errorf("targets %q, want %q", got, want)
	}
	if got, want := texts(withClass(es, "ratio")), []string{"baseline", "×2.00"}; !slices.Equal(got, want) {
		t.Errorf("ratios %q, want %q", got, want)
	}
	lat, err := os.ReadFile(filepath.Join(dir, "latency.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(withClass(parseSVG(t, lat), "bar")); got != 4 {
		t.Errorf("latency: %d bars, want 4 (haproxy has none)", got)
	}

	// haproxy alone: no latency at all.
	out := filepath.Join(dir, "haproxy")
	var stderr bytes.Buffer
	stdout.Reset()
	if err := plot([]string{"--in", in, "--out-dir", out, "--targets", "haproxy"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(out, "memory.svg") + "\n"; stdout.String() != want {
		t.Errorf("stdout %q, want %q", stdout.String(), want)
	}
	if !strings.Contains(stderr.String(), "no data for latency.svg") {
		t.Errorf("stderr %q does not say latency.svg was left out", stderr.String())
	}
	if _, err := os.Stat(filepath.Join(out, "latency.svg")); err == nil {
		t.Error("latency.svg written without data")
	}
}

func TestPlotFormatLabels(t *testing.T) {
	for us, want := range map[float64]string{
		100: "100µs", 850: "850µs", 1000: "1ms", 1234: "1.2ms", 12345: "12ms", 100000: "100ms", 2e6: "2s",
	} {
		if got := formatMicros(us); got != want {
			t.Errorf("formatMicros(%v) = %q, want %q", us, got, want)
		}
	}
	for b, want := range map[float64]string{
		0: "0 B", 512: "512 B", 4200: "4.1 KiB", 20480: "20 KiB", 3 << 20: "3 MiB",
	} {
		if got := formatBytes(b); got != want {
			t.Errorf("formatBytes(%v) = %q, want %q", b, got, want)
		}
	}
	for _, tt := range []struct{ max, step, top float64 }{
		{14000, 5 << 10, 15 << 10},
		{3000, 1 << 10, 3 << 10},
		{900, 200, 1000},
	} {
		if step, top := byteAxis(tt.max); step != tt.step || top != tt.top {
			t.Errorf("byteAxis(%v) = %v, %v, want %v, %v", tt.max, step, top, tt.step, tt.top)
		}
	}
}
