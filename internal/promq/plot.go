package promq

import (
	"context"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Plotted is a panel with its range queries' answers, ready to draw.
type Plotted struct {
	Panel
	Lines []Line
}

// Line is one series of a panel, named by its target's legend format.
type Line struct {
	Name   string
	Points []Point
}

// QueryPanel runs each of p's targets from start to end (variables
// substituted from vars) and names the series by their legends.
func QueryPanel(ctx context.Context, c *Client, p Panel, vars map[string]string, start, end time.Time, step time.Duration) (Plotted, error) {
	out := Plotted{Panel: p}
	for _, t := range p.Targets {
		expr, err := Expand(t.Expr, vars)
		if err != nil {
			return out, err
		}
		ss, err := c.QueryRange(ctx, expr, start, end, step)
		if err != nil {
			return out, err
		}
		for _, s := range ss {
			out.Lines = append(out.Lines, Line{Name: legend(t.Legend, s.Metric), Points: s.Points})
		}
	}
	sort.SliceStable(out.Lines, func(i, j int) bool { return out.Lines[i].Name < out.Lines[j].Name })
	return out, nil
}

var legendRE = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

// legend fills a Grafana legend format ("{{instance}} {{type}}") from m.
func legend(format string, m map[string]string) string {
	if format == "" {
		var parts []string
		for k, v := range m {
			parts = append(parts, k+"="+v)
		}
		sort.Strings(parts)
		return "{" + strings.Join(parts, ",") + "}"
	}
	return legendRE.ReplaceAllStringFunc(format, func(s string) string {
		return m[legendRE.FindStringSubmatch(s)[1]]
	})
}

// PlotDashboard draws every panel of the dashboard from start to end into
// dir, one SVG per row (dashboard-<row>.svg, panels three to a line as on
// the dashboard), and returns the files written.
func PlotDashboard(ctx context.Context, c *Client, panels []Panel, vars map[string]string, start, end time.Time, step time.Duration, dir string) ([]string, error) {
	var rows []string
	byRow := map[string][]Plotted{}
	for _, p := range panels {
		pp, err := QueryPanel(ctx, c, p, vars, start, end, step)
		if err != nil {
			return nil, fmt.Errorf("panel %q: %w", p.Title, err)
		}
		if _, ok := byRow[p.Row]; !ok {
			rows = append(rows, p.Row)
		}
		byRow[p.Row] = append(byRow[p.Row], pp)
	}
	var files []string
	for _, r := range rows {
		name := filepath.Join(dir, "dashboard-"+slug(r)+".svg")
		f, err := os.Create(name)
		if err != nil {
			return files, err
		}
		err = RenderRow(f, r, byRow[r], start, end)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return files, err
		}
		files = append(files, name)
	}
	return files, nil
}

func slug(s string) string {
	s = strings.ToLower(s)
	s = regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(s, "-")
	if s = strings.Trim(s, "-"); s == "" {
		return "panels"
	}
	return s
}

// Panel geometry of RenderRow, in SVG units.
const (
	panelW, plotH = 420, 150
	padL, padR    = 62, 12
	padT          = 28
	legendLine    = 13
	maxLegend     = 6
	cols          = 3
)

var palette = []string{"#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0", "#508642", "#cca300"}

// RenderRow writes one SVG with the row's title and its panels as line
// charts over [start, end], in Grafana's dark colours. NaN and infinite
// values leave gaps, as in Grafana.
func RenderRow(w io.Writer, title string, panels []Plotted, start, end time.Time) error {
	panelH := padT + plotH + 24 + maxLegend*legendLine + 8
	rows := (len(panels) + cols - 1) / cols
	width, height := cols*panelW+(cols+1)*8, 34+rows*(panelH+8)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#111217"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="10" y="22" fill="#ccccdc" font-size="16" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	for i, p := range panels {
		x, y := 8+(i%cols)*(panelW+8), 34+(i/cols)*(panelH+8)
		renderPanel(&b, p, x, y, panelH, start, end)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func renderPanel(b *strings.Builder, p Plotted, x, y, panelH int, start, end time.Time) {
	fmt.Fprintf(b, `<g transform="translate(%d,%d)">`+"\n", x, y)
	fmt.Fprintf(b, `<rect width="%d" height="%d" rx="3" fill="#181b1f" stroke="#2a2d33"/>`+"\n", panelW, panelH)
	fmt.Fprintf(b, `<text x="8" y="17" fill="#ccccdc" font-weight="bold">%s</text>`+"\n", html.EscapeString(p.Title))
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, l := range p.Lines {
		for _, pt := range l.Points {
			if !math.IsNaN(pt.V) && !math.IsInf(pt.V, 0) {
				lo, hi = math.Min(lo, pt.V), math.Max(hi, pt.V)
			}
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 0, 1
	}
	if lo > 0 {
		lo = 0 // counts and rates: from zero, as Grafana's default
	}
	if hi <= lo {
		hi = lo + 1
	}
	hi = niceCeil(hi)
	plotW := panelW - padL - padR
	px := func(t time.Time) float64 {
		return float64(padL) + float64(plotW)*t.Sub(start).Seconds()/end.Sub(start).Seconds()
	}
	py := func(v float64) float64 { return float64(padT) + float64(plotH)*(1-(v-lo)/(hi-lo)) }
	for i := 0; i <= 4; i++ {
		v := lo + (hi-lo)*float64(i)/4
		yy := py(v)
		fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#2a2d33"/>`+"\n", padL, padL+plotW, yy, yy)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" fill="#8e8e8e" text-anchor="end">%s</text>`+"\n", padL-4, yy+4, html.EscapeString(formatUnit(v, p.Unit)))
	}
	for i := 0; i <= 4; i++ {
		t := start.Add(time.Duration(float64(end.Sub(start)) * float64(i) / 4))
		fmt.Fprintf(b, `<text x="%.1f" y="%d" fill="#8e8e8e" text-anchor="middle">%s</text>`+"\n", px(t), padT+plotH+14, t.UTC().Format("15:04:05"))
	}
	for i, l := range p.Lines {
		color := palette[i%len(palette)]
		var path strings.Builder
		pen := false
		for _, pt := range l.Points {
			if math.IsNaN(pt.V) || math.IsInf(pt.V, 0) {
				pen = false
				continue
			}
			cmd := "L"
			if !pen {
				cmd = "M"
			}
			fmt.Fprintf(&path, "%s%.1f %.1f ", cmd, px(pt.T), py(pt.V))
			pen = true
		}
		if path.Len() > 0 {
			fmt.Fprintf(b, `<path d="%s" fill="none" stroke="%s" stroke-width="1.5"/>`+"\n", strings.TrimSpace(path.String()), color)
		}
		if i < maxLegend {
			ly := padT + plotH + 24 + i*legendLine
			name := l.Name
			if i == maxLegend-1 && len(p.Lines) > maxLegend {
				name = fmt.Sprintf("… and %d more", len(p.Lines)-i)
				color = "#8e8e8e"
			}
			fmt.Fprintf(b, `<rect x="8" y="%d" width="10" height="3" fill="%s"/>`, ly-4, color)
			fmt.Fprintf(b, `<text x="22" y="%d" fill="#ccccdc">%s</text>`+"\n", ly, html.EscapeString(name))
		}
	}
	if len(p.Lines) == 0 {
		fmt.Fprintf(b, `<text x="%d" y="%d" fill="#8e8e8e" text-anchor="middle">No data</text>`+"\n", padL+plotW/2, padT+plotH/2)
	}
	b.WriteString("</g>\n")
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*e >= v {
			return m * e
		}
	}
	return 10 * e
}

// formatUnit writes v in the panel's Grafana unit.
func formatUnit(v float64, unit string) string {
	switch unit {
	case "s":
		switch a := math.Abs(v); {
		case a == 0:
			return "0"
		case a < 1e-3:
			return fmt.Sprintf("%.3gµs", v*1e6)
		case a < 1:
			return fmt.Sprintf("%.3gms", v*1e3)
		}
		return fmt.Sprintf("%.3gs", v)
	case "bytes", "Bps":
		suffix := ""
		if unit == "Bps" {
			suffix = "/s"
		}
		for _, u := range []string{"B", "KiB", "MiB", "GiB"} {
			if math.Abs(v) < 1024 || u == "GiB" {
				return fmt.Sprintf("%.3g %s%s", v, u, suffix)
			}
			v /= 1024
		}
	case "percentunit":
		return fmt.Sprintf("%.3g%%", v*100)
	case "ops":
		return short(v) + "/s"
	}
	return short(v)
}

func short(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case a >= 1e3:
		return fmt.Sprintf("%.3gk", v/1e3)
	}
	return fmt.Sprintf("%.3g", v)
}
