package main

// The plot subcommand turns results files into two standalone SVG charts,
// latency.svg and memory.svg. The bench suite (make bench, through
// tools/gwbench/run.sh) writes them under docs/benchmarks/, beside the
// results and the markdown table, so the documentation can show the
// comparison at a glance. They are drawn with fmt and the standard library
// only: a handful of rectangles and lines does not justify a plotting
// dependency, and plain SVG diffs and renders anywhere (GitHub included).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// plotConfig are the options of the plot subcommand.
type plotConfig struct {
	in       stringList
	outDir   string
	since    string
	baseline string
	targets  string
}

func runPlot(args []string) error {
	return plot(args, os.Stdout, os.Stderr)
}

// plot reads the results, draws the charts that have data, prints the
// paths written on stdout and says on stderr what it left out.
func plot(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("plot", flag.ExitOnError)
	var pc plotConfig
	fs.Var(&pc.in, "in", "results file (JSON lines, one result each); repeatable")
	fs.StringVar(&pc.outDir, "out-dir", "", "directory to write latency.svg and memory.svg to (created if missing)")
	fs.StringVar(&pc.since, "since", "", "keep only results dated at or after this RFC3339 time (picks one run out of an append-only file)")
	fs.StringVar(&pc.baseline, "baseline", "", "target the memory ratios are relative to (default: the first target)")
	fs.StringVar(&pc.targets, "targets", "", "comma-separated targets to plot, in this order (default: all, in order of first appearance)")
	fs.Parse(args)
	if len(pc.in) == 0 || pc.outDir == "" {
		return errors.New("gwbench: plot needs --in FILE and --out-dir DIR")
	}
	rs, skipped, err := readResultFiles(pc.in)
	if err != nil {
		return err
	}
	if skipped > 0 {
		fmt.Fprintf(stderr, "gwbench: plot: skipped %d unparsable line(s)\n", skipped)
	}
	if pc.since != "" {
		since, err := time.Parse(time.RFC3339, pc.since)
		if err != nil {
			return fmt.Errorf("gwbench: plot: --since: %w", err)
		}
		n := len(rs)
		rs = filterSince(rs, since)
		fmt.Fprintf(stderr, "gwbench: plot: %d of %d results dated %s or later\n", len(rs), n, pc.since)
	}
	targets := plotTargets(rs, pc.targets)
	baseline := pc.baseline
	if baseline == "" && len(targets) > 0 {
		baseline = targets[0]
	}
	charts := []struct {
		file string
		svg  []byte
	}{
		{"latency.svg", latencySVG(rs, targets)},
		{"memory.svg", memorySVG(rs, targets, baseline)},
	}
	for _, c := range charts {
		if c.svg == nil {
			fmt.Fprintf(stderr, "gwbench: plot: no data for %s, not written\n", c.file)
			continue
		}
		if err := os.MkdirAll(pc.outDir, 0o755); err != nil {
			return err
		}
		path := filepath.Join(pc.outDir, c.file)
		if err := os.WriteFile(path, c.svg, 0o644); err != nil {
			return err
		}
		fmt.Fprintln(stdout, path)
	}
	return nil
}

// readResultFiles reads every file in turn; skipped counts the lines that
// are not a result.
func readResultFiles(paths []string) (rs []*Result, skipped int, err error) {
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, 0, err
		}
		more, n, err := readResults(f)
		f.Close()
		if err != nil {
			return nil, 0, fmt.Errorf("gwbench: plot: read %s: %w", p, err)
		}
		rs, skipped = append(rs, more...), skipped+n
	}
	return rs, skipped, nil
}

// readResults parses JSON lines. Blank lines are ignored; lines that are
// not JSON, or lack a scenario or target, are counted in skipped.
func readResults(r io.Reader) (rs []*Result, skipped int, err error) {
	br := bufio.NewReader(r) // no line length limit, unlike bufio.Scanner
	for {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var res Result
			if json.Unmarshal(line, &res) != nil || res.Scenario == "" || res.Target == "" {
				skipped++
			} else {
				rs = append(rs, &res)
			}
		}
		if err == io.EOF {
			return rs, skipped, nil
		}
		if err != nil {
			return nil, 0, err
		}
	}
}

// filterSince keeps the results dated at or after since; results without
// a valid date are dropped.
func filterSince(rs []*Result, since time.Time) []*Result {
	var out []*Result
	for _, r := range rs {
		if d, err := time.Parse(time.RFC3339, r.Date); err == nil && !d.Before(since) {
			out = append(out, r)
		}
	}
	return out
}

// plotTargets is the comma-separated list if given, else every target in
// order of first appearance.
func plotTargets(rs []*Result, list string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(t string) {
		if t != "" && !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	if list != "" {
		for _, t := range strings.Split(list, ",") {
			add(strings.TrimSpace(t))
		}
		return out
	}
	for _, r := range rs {
		add(r.Target)
	}
	return out
}

// stat is the median of a key over the runs of a target; runs == 0 means
// no data.
type stat struct {
	value float64
	runs  int
}

func medianStat(rs []*Result, scenario, target, key string) stat {
	xs := collect(rs, scenario, target, key)
	return stat{median(xs), len(xs)}
}

// Layout shared by both charts (SVG user units, y grows downwards).
const (
	chartW     = 900
	chartH     = 420
	plotLeft   = 80  // room for the y labels
	plotRight  = 876 // chartW − right margin
	plotTop    = 76  // below title, legend and subtitle; room for value labels
	plotBottom = 356 // above the target names
)

var percentiles = []struct{ key, label, colour string }{
	{"latency_p50_us", "p50", "#4e79a7"},
	{"latency_p90_us", "p90", "#f28e2b"},
	{"latency_p99_us", "p99", "#e15759"},
	{"latency_p999_us", "p99.9", "#76b7b2"},
}

// latencySVG draws the echo latency percentiles of scenario cpu, one group
// of bars per target, on a log scale; nil if no target has any.
func latencySVG(rs []*Result, targets []string) []byte {
	type group struct {
		target string
		bars   []stat // one per percentile; runs == 0: no bar
	}
	var groups []group
	var runs []int
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, t := range targets {
		g := group{target: t}
		hasData := false
		for _, p := range percentiles {
			s := medianStat(rs, "cpu", t, p.key)
			if s.value <= 0 { // not on a log scale
				s.runs = 0
			}
			if s.runs > 0 {
				hasData = true
				lo, hi = math.Min(lo, s.value), math.Max(hi, s.value)
				runs = append(runs, s.runs)
			}
			g.bars = append(g.bars, s)
		}
		if hasData {
			groups = append(groups, g)
		}
	}
	if len(groups) == 0 {
		return nil
	}
	// Whole decades around the data; the bars start at the lower one.
	loExp, hiExp := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if loExp == math.Log10(lo) { // a bar exactly on the bottom line would not show
		loExp--
	}
	y := func(v float64) float64 {
		return plotBottom - (math.Log10(v)-loExp)/(hiExp-loExp)*(plotBottom-plotTop)
	}

	sub := fmt.Sprintf("scenario cpu, median of %s per target; log scale", runsLabel(runs))
	var missing []string // e.g. p90, which only open-loop runs (--rate) report
	for j, p := range percentiles {
		found := false
		for _, g := range groups {
			found = found || g.bars[j].runs > 0
		}
		if !found {
			missing = append(missing, p.label)
		}
	}
	if len(missing) > 0 {
		sub += "; no " + strings.Join(missing, ", ") + " in these results"
	}
	var d svgDoc
	d.begin("Echo latency percentiles per target", sub)
	var legend []legendItem
	for _, p := range percentiles {
		legend = append(legend, legendItem{p.label, p.colour})
	}
	d.legend(legend)
	for e := loExp; e <= hiExp; e++ {
		v := math.Pow(10, e)
		if e < hiExp {
			for _, m := range []float64{2, 5} { // unlabelled, to help read between decades
				d.gridline(y(m*v), "#f0f0f0")
			}
		}
		d.gridline(y(v), "#d8d8d8")
		d.yLabel(y(v), formatMicros(v))
	}
	d.axes("latency (µs, log scale)")
	gw := float64(plotRight-plotLeft) / float64(len(groups))
	bw := gw * 0.8 / float64(len(percentiles))
	for i, g := range groups {
		for j, s := range g.bars {
			if s.runs == 0 {
				continue
			}
			p := percentiles[j]
			x := plotLeft + float64(i)*gw + 0.1*gw + float64(j)*bw
			top := y(s.value)
			d.f(`<rect class="bar" data-target="%s" data-key="%s" data-value="%g" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s (median of %d)</title></rect>`,
				esc(g.target), p.label, s.value, x+1, top, bw-2, plotBottom-top, p.colour,
				esc(g.target), p.label, formatMicros(s.value), s.runs)
			d.valueLabel(x+bw/2, top-4, math.Min(10, bw/3.2), formatMicros(s.value))
		}
		d.targetLabel(plotLeft+(float64(i)+0.5)*gw, g.target, "")
	}
	return d.end()
}

// memorySVG draws the user-space memory per idle session of scenario mem,
// one bar per target, the RSS of its child processes (if measured) stacked
// on top; nil if no target has any.
func memorySVG(rs []*Result, targets []string, baseline string) []byte {
	type column struct {
		target   string
		own      stat // bytes_per_session: RSS growth of the target process
		children stat // children_rss_bytes_per_session; runs == 0: not measured
	}
	var cols []column
	var runs []int
	hasChildren := false
	highest := 0.0 // top of the highest stack
	for _, t := range targets {
		c := column{
			target:   t,
			own:      medianStat(rs, "mem", t, "bytes_per_session"),
			children: medianStat(rs, "mem", t, "children_rss_bytes_per_session"),
		}
		if c.own.runs == 0 {
			continue
		}
		cols = append(cols, c)
		runs = append(runs, c.own.runs)
		hasChildren = hasChildren || c.children.runs > 0
		highest = math.Max(highest, math.Max(c.own.value, 0)+math.Max(c.children.value, 0))
	}
	if len(cols) == 0 {
		return nil
	}
	base := medianStat(rs, "mem", baseline, "bytes_per_session")
	step, top := byteAxis(highest)
	y := func(v float64) float64 {
		return plotBottom - math.Max(v, 0)/top*(plotBottom-plotTop)
	}

	const ownColour, childColour = "#4e79a7", "#a0cbe8"
	var d svgDoc
	sub := fmt.Sprintf("scenario mem, median of %s per target; ratios of the target process to %s", runsLabel(runs), baseline)
	d.begin("User-space memory (RSS) per idle session", sub)
	if hasChildren {
		d.legend([]legendItem{{"target process", ownColour}, {"children", childColour}})
	}
	for v := 0.0; v <= top+step/2; v += step {
		d.gridline(y(v), "#d8d8d8")
		d.yLabel(y(v), formatBytes(v))
	}
	d.axes("bytes per session")
	gw := float64(plotRight-plotLeft) / float64(len(cols))
	bw := math.Min(gw*0.5, 120)
	for i, c := range cols {
		cx := plotLeft + (float64(i)+0.5)*gw
		x := cx - bw/2
		ownTop := y(c.own.value)
		d.f(`<rect class="bar" data-target="%s" data-value="%g" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %.0f B per session (median of %d)</title></rect>`,
			esc(c.target), c.own.value, x, ownTop, bw, plotBottom-ownTop, ownColour,
			esc(c.target), c.own.value, c.own.runs)
		if c.children.runs > 0 && c.children.value > 0 {
			childTop := y(math.Max(c.own.value, 0) + c.children.value)
			d.f(`<rect class="children" data-target="%s" data-value="%g" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s children: %.0f B per session (median of %d)</title></rect>`,
				esc(c.target), c.children.value, x, childTop, bw, ownTop-childTop, childColour,
				esc(c.target), c.children.value, c.children.runs)
			// Beside the segment, in the gap to the next bar.
			mid := (childTop + ownTop) / 2
			d.f(`<text class="children-label" x="%.1f" y="%.1f" font-size="10" fill="#555">children</text>`, x+bw+4, mid-2)
			d.f(`<text class="children-label" x="%.1f" y="%.1f" font-size="10" fill="#555">+%s</text>`, x+bw+4, mid+10, esc(formatBytes(c.children.value)))
		}
		// On top of the target's own segment (over the light children
		// segment if any): the value the ratio is about.
		d.valueLabel(cx, ownTop-4, 11, formatBytes(c.own.value))
		ratio := ""
		switch {
		case c.target == baseline:
			ratio = "baseline"
		case base.runs > 0 && base.value != 0:
			ratio = fmt.Sprintf("×%.2f", c.own.value/base.value)
		}
		d.targetLabel(cx, c.target, ratio)
	}
	return d.end()
}

// byteAxis picks the gridline step for 0..highest bytes: 1, 2 or 5 × 10^k of
// B, KiB or MiB, about five lines; top is the highest gridline.
func byteAxis(highest float64) (step, top float64) {
	if highest <= 0 {
		highest = 1024
	}
	unit := 1.0
	switch {
	case highest >= 1<<20:
		unit = 1 << 20
	case highest >= 1<<10:
		unit = 1 << 10
	}
	raw := highest / unit / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step = 10 * mag
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	step *= unit
	return step, math.Ceil(highest/step-1e-9) * step
}

// formatMicros renders a latency in µs with the unit that suits it:
// 850µs, 1.2ms, 12ms, 1s.
func formatMicros(us float64) string {
	switch {
	case us >= 1e6:
		return shortNumber(us/1e6) + "s"
	case us >= 1e3:
		return shortNumber(us/1e3) + "ms"
	}
	return shortNumber(us) + "µs"
}

// formatBytes renders a size: 512 B, 4.1 KiB, 12 MiB.
func formatBytes(b float64) string {
	switch a := math.Abs(b); {
	case a >= 1<<20:
		return shortNumber(b/(1<<20)) + " MiB"
	case a >= 1<<10:
		return shortNumber(b/(1<<10)) + " KiB"
	}
	return fmt.Sprintf("%.0f B", b)
}

// shortNumber keeps one decimal below 10 (dropping ".0"), none above.
func shortNumber(v float64) string {
	if math.Abs(v) >= 9.95 {
		return fmt.Sprintf("%.0f", v)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0")
}

// runsLabel says how many runs are behind the medians: "3 runs", "2–3 runs".
func runsLabel(runs []int) string {
	lo, hi := runs[0], runs[0]
	for _, n := range runs {
		lo, hi = min(lo, n), max(hi, n)
	}
	switch {
	case lo != hi:
		return fmt.Sprintf("%d–%d runs", lo, hi)
	case lo == 1:
		return "1 run"
	}
	return fmt.Sprintf("%d runs", lo)
}

// esc escapes s for XML text and attribute values.
func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// svgDoc accumulates the elements of one chart.
type svgDoc struct {
	b bytes.Buffer
}

type legendItem struct{ label, colour string }

// f writes one element (a line of SVG).
func (d *svgDoc) f(format string, a ...any) {
	fmt.Fprintf(&d.b, format, a...)
	d.b.WriteByte('\n')
}

func (d *svgDoc) begin(title, subtitle string) {
	d.f(`<?xml version="1.0" encoding="UTF-8"?>`)
	d.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12" fill="#222">`,
		chartW, chartH, chartW, chartH)
	d.f(`<title>%s</title>`, esc(title))
	d.f(`<rect width="%d" height="%d" fill="#fff"/>`, chartW, chartH)
	d.f(`<text x="%d" y="26" font-size="16" font-weight="bold">%s</text>`, plotLeft, esc(title))
	d.f(`<text x="%d" y="46" font-size="11" fill="#666">%s</text>`, plotLeft, esc(subtitle))
}

// legend draws the items in a row, right-aligned, level with the title.
func (d *svgDoc) legend(items []legendItem) {
	width := func(it legendItem) float64 { return 12 + 5 + 7*float64(len([]rune(it.label))) + 16 }
	x := float64(plotRight)
	for _, it := range items {
		x -= width(it)
	}
	for _, it := range items {
		d.f(`<rect class="swatch" x="%.1f" y="15" width="12" height="12" fill="%s"/>`, x, it.colour)
		d.f(`<text x="%.1f" y="25">%s</text>`, x+17, esc(it.label))
		x += width(it)
	}
}

func (d *svgDoc) gridline(y float64, colour string) {
	d.f(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`, plotLeft, y, plotRight, y, colour)
}

func (d *svgDoc) yLabel(y float64, label string) {
	d.f(`<text class="tick" x="%d" y="%.1f" dy="0.32em" text-anchor="end" font-size="11">%s</text>`, plotLeft-6, y, esc(label))
}

// axes draws the y and x axis lines and the y axis title.
func (d *svgDoc) axes(yTitle string) {
	d.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`, plotLeft, plotTop, plotLeft, plotBottom)
	d.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`, plotLeft, plotBottom, plotRight, plotBottom)
	cy := (plotTop + plotBottom) / 2
	d.f(`<text x="18" y="%d" text-anchor="middle" font-size="11" fill="#666" transform="rotate(-90 18 %d)">%s</text>`, cy, cy, esc(yTitle))
}

func (d *svgDoc) valueLabel(x, y, size float64, label string) {
	d.f(`<text class="value" x="%.1f" y="%.1f" text-anchor="middle" font-size="%.1f">%s</text>`, x, y, size, esc(label))
}

// targetLabel writes the target name under its bars and, if not empty, a
// second line (the ratio to the baseline).
func (d *svgDoc) targetLabel(x float64, name, second string) {
	d.f(`<text class="target" x="%.1f" y="%d" text-anchor="middle" font-size="13">%s</text>`, x, plotBottom+20, esc(name))
	if second != "" {
		d.f(`<text class="ratio" x="%.1f" y="%d" text-anchor="middle" font-size="11" fill="#666">%s</text>`, x, plotBottom+38, esc(second))
	}
}

func (d *svgDoc) end() []byte {
	d.f(`</svg>`)
	return d.b.Bytes()
}
