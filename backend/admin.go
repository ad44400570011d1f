package backend

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/VictoriaMetrics/metrics"
	"github.com/switchyard-gw/switchyard/internal/admin"
)

// The shard's admin HTTP listener (Config.AdminListen): /metrics, the
// shard's series (metrics.go) and the process's; /healthz, 200 while the
// process serves HTTP at all; /readyz, 200 only while the shard has
// joined the cluster (announced itself active) and takes sessions, 503
// with the reason otherwise. With Config.AdminToken, /metrics wants it as
// a bearer token; the probes answer without it, as the gateway's do.

// Readiness is the answer of /readyz.
type Readiness struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
}

// readiness says whether gateways can place sessions here now.
func (srv *Server) readiness() Readiness {
	srv.mu.RLock()
	draining, closed := srv.draining, srv.closed
	srv.mu.RUnlock()
	switch {
	case closed:
		return Readiness{Reason: "closed"}
	case draining:
		return Readiness{Reason: "draining"}
	case !srv.serving.Load():
		return Readiness{Reason: "starting: not joined to the cluster yet"}
	}
	return Readiness{Ready: true}
}

// startAdminLocked binds the admin listener; the caller holds gmu.
func (srv *Server) startAdminLocked() error {
	if srv.cfg.AdminListen == "-" {
		return nil
	}
	ln, err := net.Listen("tcp", srv.cfg.AdminListen)
	if err != nil {
		return fmt.Errorf("backend: admin listen %s: %w", srv.cfg.AdminListen, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		rd := srv.readiness()
		w.Header().Set("Content-Type", "application/json")
		if !rd.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(rd)
	})
	mux.Handle("GET /metrics", srv.authorized(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		srv.metrics.set.WritePrometheus(w)
		metrics.WriteProcessMetrics(w)
		metrics.WriteFDMetrics(w) // process_open_fds, process_max_fds: a shard has few

	})))
	srv.adminLn = ln
	srv.admin = &http.Server{Handler: mux, ReadHeaderTimeout: adminHeaderTimeout}
	// Not spawn: the caller holds gmu, and has checked stopping.
	srv.mainWG.Add(1)
	go func() {
		defer srv.mainWG.Done()
		if err := srv.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			srv.log.Error("admin listener stopped", "err", err)
		}
	}()
	return nil
}

// adminHeaderTimeout bounds reading a request's header: a scraper that
// connects and says nothing does not hold a goroutine for long.
const adminHeaderTimeout = 5e9

// authorized requires the bearer token when one is configured.
func (srv *Server) authorized(h http.Handler) http.Handler {
	return admin.Bearer(srv.cfg.AdminToken, h, func(w http.ResponseWriter) {
		http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
	})
}

// AdminAddr returns the bound admin address ("" before Start or when
// AdminListen is "-").
func (srv *Server) AdminAddr() string {
	srv.gmu.Lock()
	defer srv.gmu.Unlock()
	if srv.adminLn == nil {
		return ""
	}
	return srv.adminLn.Addr().String()
}
