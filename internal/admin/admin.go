package admin

import (
	"crypto/subtle"
	"net/http"
	"runtime"
	"strings"
)

var escaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// Escape returns v escaped for a label value between double quotes.
func Escape(v string) string { return escaper.Replace(v) }

// BuildInfo is the name of the switchyard_build_info series, whose value
// is always 1: its labels carry the release, the commit and the Go
// version, so that a dashboard can tell a mixed-version cluster.
func BuildInfo(version, commit string) string {
	return `switchyard_build_info{version="` + Escape(version) + `",commit="` + Escape(commit) +
		`",goversion="` + Escape(runtime.Version()) + `"}`
}

// Bearer wraps h so that it answers only requests with the bearer token
// (compared in constant time); others get 401 from unauthorized. An
// empty token lets every request through.
func Bearer(token string, h http.Handler, unauthorized func(http.ResponseWriter)) http.Handler {
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="switchyard"`)
			unauthorized(w)
			return
		}
		h.ServeHTTP(w, r)
	})
}
