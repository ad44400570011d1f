package promq

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client asks one Prometheus's HTTP API.
type Client struct {
	URL  string       // e.g. http://127.0.0.1:9090
	HTTP *http.Client // nil: http.DefaultClient
}

// Sample is one element of an instant query's result.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Point is one value of a range query's series.
type Point struct {
	T time.Time
	V float64
}

// Series is one element of a range query's result.
type Series struct {
	Metric map[string]string
	Points []Point
}

// Query runs an instant query at the server's now. A scalar result is
// returned as one sample without labels.
func (c *Client) Query(ctx context.Context, expr string) ([]Sample, error) {
	var res []struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	}
	typ, raw, err := c.get(ctx, "/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return nil, err
	}
	switch typ {
	case "vector":
		if err := json.Unmarshal(raw, &res); err != nil {
			return nil, fmt.Errorf("promq: %q: %w", expr, err)
		}
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("promq: %q: %w", expr, err)
		}
		res = append(res, struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}{Value: v})
	default:
		return nil, fmt.Errorf("promq: %q: result type %q, want vector or scalar", expr, typ)
	}
	out := make([]Sample, 0, len(res))
	for _, r := range res {
		_, v, err := pair(r.Value)
		if err != nil {
			return nil, fmt.Errorf("promq: %q: %w", expr, err)
		}
		out = append(out, Sample{Metric: r.Metric, Value: v})
	}
	return out, nil
}

// QueryRange runs a range query from start to end every step.
func (c *Client) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]Series, error) {
	typ, raw, err := c.get(ctx, "/api/v1/query_range", url.Values{"query": {expr},
		"start": {unix(start)}, "end": {unix(end)}, "step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}})
	if err != nil {
		return nil, err
	}
	if typ != "matrix" {
		return nil, fmt.Errorf("promq: %q: result type %q, want matrix", expr, typ)
	}
	var res []struct {
		Metric map[string]string `json:"metric"`
		Values [][2]any          `json:"values"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, fmt.Errorf("promq: %q: %w", expr, err)
	}
	out := make([]Series, 0, len(res))
	for _, r := range res {
		s := Series{Metric: r.Metric, Points: make([]Point, 0, len(r.Values))}
		for _, p := range r.Values {
			t, v, err := pair(p)
			if err != nil {
				return nil, fmt.Errorf("promq: %q: %w", expr, err)
			}
			s.Points = append(s.Points, Point{T: t, V: v})
		}
		out = append(out, s)
	}
	return out, nil
}

// get calls path and returns the result type and the raw result; a
// Prometheus error (a query that does not parse, a bad range) is an error
// carrying its message.
func (c *Client) get(ctx context.Context, path string, q url.Values) (string, json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.URL, "/")+path+"?"+q.Encode(), nil)
	if err != nil {
		return "", nil, err
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return "", nil, err
	}
	var r struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return "", nil, fmt.Errorf("promq: %s: HTTP %d, not JSON: %.200s", path, resp.StatusCode, body)
	}
	if r.Status != "success" {
		return "", nil, fmt.Errorf("promq: %s %q: %s: %s", path, q.Get("query"), r.ErrorType, r.Error)
	}
	return r.Data.ResultType, r.Data.Result, nil
}

// pair decodes [unix seconds, "value"].
func pair(p [2]any) (time.Time, float64, error) {
	ts, ok := p[0].(float64)
	if !ok {
		return time.Time{}, 0, fmt.Errorf("timestamp %v", p[0])
	}
	s, ok := p[1].(string)
	if !ok {
		return time.Time{}, 0, fmt.Errorf("value %v", p[1])
	}
	v, err := strconv.ParseFloat(s, 64) // parses NaN, +Inf, -Inf as Prometheus writes them
	if err != nil {
		return time.Time{}, 0, err
	}
	sec, frac := math.Modf(ts)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), v, nil
}

func unix(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}
