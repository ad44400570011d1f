package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"

	"github.com/VictoriaMetrics/metrics"
)

// startAdmin binds the admin HTTP listener: /metrics, /healthz, /readyz,
// /debug/pprof/ and the JSON API under /api/v1/.
func (g *Gateway) startAdmin() error {
	if g.cfg.AdminListen == "-" {
		return nil
	}
	ln, err := net.Listen("tcp", g.cfg.AdminListen)
	if err != nil {
		return fmt.Errorf("server: admin listen %s: %w", g.cfg.AdminListen, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", g.readyz)
	mux.Handle("GET /metrics", g.authorized(http.HandlerFunc(g.serveMetrics)))
	mux.Handle("/debug/pprof/", g.authorized(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/cmdline", g.authorized(http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("/debug/pprof/profile", g.authorized(http.HandlerFunc(pprof.Profile)))
	mux.Handle("/debug/pprof/symbol", g.authorized(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("/debug/pprof/trace", g.authorized(http.HandlerFunc(pprof.Trace)))
	mux.Handle("GET /api/v1/sessions/{device}", g.authorized(http.HandlerFunc(g.sessionLookup)))
	mux.Handle("GET /api/v1/cluster/members", g.authorized(http.HandlerFunc(g.clusterMembers)))
	mux.Handle("GET /api/v1/cluster/ring", g.authorized(http.HandlerFunc(g.clusterRing)))
	mux.Handle("POST /api/v1/reload", g.authorized(http.HandlerFunc(g.reload)))
	g.adminLn = ln
	g.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 5e9}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := g.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("admin listener stopped", "err", err)
		}
	}()
	return nil
}

func (g *Gateway) stopAdmin(ctx context.Context) {
	if g.admin != nil {
		_ = g.admin.Shutdown(ctx)
	}
}

// authorized requires the bearer token when one is configured.
func (g *Gateway) authorized(h http.Handler) http.Handler {
	if g.cfg.AdminToken == "" {
		return h
	}
	want := []byte("Bearer " + g.cfg.AdminToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (g *Gateway) readyz(w http.ResponseWriter, _ *http.Request) {
	if !g.Ready() {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

func (g *Gateway) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	g.metrics.set.WritePrometheus(w)
	metrics.WriteProcessMetrics(w)
}

// SessionInfo is the admin API's view of one session.
type SessionInfo struct {
	Device      string `json:"device"`
	Session     string `json:"session"`
	Attached    bool   `json:"attached"`
	Remote      string `json:"remote,omitempty"`
	UpLast      uint32 `json:"up_last"`
	DownSeq     uint32 `json:"down_seq"`
	OutboxBytes int    `json:"outbox_bytes"`
}

func (g *Gateway) sessionLookup(w http.ResponseWriter, r *http.Request) {
	s := g.sessions.get(r.PathValue("device"))
	if s == nil {
		http.Error(w, "no such session", http.StatusNotFound)
		return
	}
	s.mu.Lock()
	info := SessionInfo{Device: s.device, Session: s.idString(), Attached: s.conn != nil,
		UpLast: s.upLast, DownSeq: s.downSeq, OutboxBytes: s.outbox.size()}
	if s.conn != nil {
		info.Remote = s.conn.nc.RemoteAddr().String()
	}
	s.mu.Unlock()
	writeJSON(w, info)
}

// MemberInfo is the admin API's view of one cluster member.
type MemberInfo struct {
	Name    string            `json:"name"`
	Addr    string            `json:"addr"`
	Alive   bool              `json:"alive"`
	Role    string            `json:"role"`
	Shard   string            `json:"shard,omitempty"`
	Link    string            `json:"link,omitempty"`
	State   string            `json:"state"`
	Version string            `json:"version,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
}

func (g *Gateway) clusterMembers(w http.ResponseWriter, _ *http.Request) {
	if g.gossip == nil {
		http.Error(w, "not in a cluster", http.StatusNotFound)
		return
	}
	var out []MemberInfo
	for _, m := range g.gossip.node.Members() {
		out = append(out, MemberInfo{Name: m.Name, Addr: m.Addr, Alive: m.Alive, Role: m.Meta.Role.String(),
			Shard: m.Meta.Shard, Link: m.Meta.Link, State: m.Meta.State.String(), Version: m.Meta.Version, Labels: m.Meta.Labels})
	}
	writeJSON(w, out)
}

// RingInfo is the admin API's view of the gateway's ring.
type RingInfo struct {
	Fingerprint uint64         `json:"fingerprint"`
	Shards      []string       `json:"shards"`
	Partitions  map[string]int `json:"partitions"`
}

func (g *Gateway) clusterRing(w http.ResponseWriter, _ *http.Request) {
	if g.ring == nil {
		http.Error(w, "not in a cluster", http.StatusNotFound)
		return
	}
	r := g.ring.Ring()
	info := RingInfo{Fingerprint: r.Fingerprint(), Partitions: r.Loads()}
	for _, s := range r.Shards() {
		info.Shards = append(info.Shards, s.Name)
	}
	writeJSON(w, info)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
