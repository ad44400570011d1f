package backend

// StatSeriesValues returns the value of every statSeries row for st.
func StatSeriesValues(st *Stats) []float64 {
	out := make([]float64, 0, len(statSeries))
	for _, s := range statSeries {
		out = append(out, float64(s.get(st)))
	}
	return out
}
