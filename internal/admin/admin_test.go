package admin

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/switchyard-gw/switchyard/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m, nil) }

func TestBuildInfoEscapes(t *testing.T) {
	got := BuildInfo(`1.0"x`, "a\\b\nc")
	want := `switchyard_build_info{version="1.0\"x",commit="a\\b\nc",goversion="` + runtime.Version() + `"}`
	if got != want {
		t.Fatalf("BuildInfo:\n got %s\nwant %s", got, want)
	}
}

// TestBearer: with a token, only requests that carry it pass; without
// one, every request does.
func TestBearer(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	deny := func(w http.ResponseWriter) { w.WriteHeader(http.StatusUnauthorized) }
	tests := []struct {
		token, header string
		want          int
	}{
		{"", "", http.StatusNoContent},
		{"s3cret", "", http.StatusUnauthorized},
		{"s3cret", "Bearer wrong", http.StatusUnauthorized},
		{"s3cret", "s3cret", http.StatusUnauthorized},
		{"s3cret", "Bearer s3cret", http.StatusNoContent},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if tt.header != "" {
			r.Header.Set("Authorization", tt.header)
		}
		w := httptest.NewRecorder()
		Bearer(tt.token, ok, deny).ServeHTTP(w, r)
		if w.Code != tt.want {
			t.Errorf("token %q, header %q: %d, want %d", tt.token, tt.header, w.Code, tt.want)
		}
		if tt.want == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("401 without WWW-Authenticate")
		}
	}
}
