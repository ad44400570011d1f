package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/switchyard-gw/switchyard/internal/admin"
	"github.com/switchyard-gw/switchyard/protocol"
)

// The admin HTTP listener: /metrics, /healthz, /readyz, /debug/pprof/ and
// the JSON API under /api/v1/ (docs/operations.md, "Admin API"). Every
// API answer is JSON, errors included ({"error": "..."}); with
// Config.AdminToken every route but /healthz and /readyz wants it as a
// bearer token, and a request without it changes nothing (401).

// Admin API bounds.
const (
	defaultPageSize = 100  // sessions per page when ?limit= is absent
	maxPageSize     = 1000 // largest ?limit= accepted
	maxAdminBody    = 4096 // bytes of a POST body read
)

// adminState is what the admin API keeps on the gateway.
type adminState struct {
	up        atomic.Bool // Start finished: the listeners and the gossip are set
	started   time.Time
	kicks     *metrics.Counter // switchyard_admin_kicks_total
	drainReq  chan struct{}    // closed by POST /api/v1/drain (DrainRequested)
	drainOnce sync.Once
	// configHash is Config.ConfigHash of the configuration last loaded:
	// at New, then by every reload that passed validation.
	configHash atomic.Pointer[string]
}

func (a *adminState) init(set *metrics.Set) {
	a.kicks = set.NewCounter("switchyard_admin_kicks_total")
	a.drainReq = make(chan struct{})
}

// DrainRequested is closed when the admin API asked this gateway to drain
// (POST /api/v1/drain). Whoever runs the gateway then calls Close, as on
// SIGTERM, and exits; `switchyard gateway` does.
func (g *Gateway) DrainRequested() <-chan struct{} { return g.adm.drainReq }

// route is one API path: its handler per method; others get 405.
type route map[string]http.HandlerFunc

func (rt route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := rt[r.Method]; h != nil {
		h(w, r)
		return
	}
	if r.Method == http.MethodHead && rt[http.MethodGet] != nil {
		rt[http.MethodGet](w, r)
		return
	}
	allow := make([]string, 0, len(rt))
	for m := range rt {
		allow = append(allow, m)
	}
	sort.Strings(allow)
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed; allowed: %s", r.Method, strings.Join(allow, ", ")))
}

// apiRoutes are the JSON API's paths (Go ServeMux patterns, no method).
func (g *Gateway) apiRoutes() map[string]route {
	return map[string]route{
		"/api/v1/info":                   {http.MethodGet: g.nodeInfo},
		"/api/v1/cluster/members":        {http.MethodGet: g.clusterMembers},
		"/api/v1/cluster/ring":           {http.MethodGet: g.clusterRing},
		"/api/v1/sessions":               {http.MethodGet: g.sessionList},
		"/api/v1/sessions/{device}":      {http.MethodGet: g.sessionLookup},
		"/api/v1/sessions/{device}/kick": {http.MethodPost: g.kick},
		"/api/v1/drain":                  {http.MethodPost: g.drainSelf},
		"/api/v1/shards/{name}/drain":    {http.MethodPost: g.drainShard},
		"/api/v1/reload":                 {http.MethodPost: g.reload},
		"/api/v1/trace":                  {http.MethodPost: g.startTrace},
		"/api/v1/devices/{device}":       {http.MethodGet: g.deviceLookup},
		"/api/v1/disconnects":            {http.MethodGet: g.disconnectList},
	}
}

// startAdmin binds the admin HTTP listener.
func (g *Gateway) startAdmin() error {
	g.adm.started = time.Now()
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
	for pattern, rt := range g.apiRoutes() {
		mux.Handle(pattern, g.authorized(g.whenUp(rt)))
	}
	mux.Handle("/api/", g.authorized(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API path: "+r.URL.Path)
	})))
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

// whenUp answers 503 until Start has finished: the handlers read what
// Start sets after the admin listener is up.
func (g *Gateway) whenUp(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.adm.up.Load() {
			writeError(w, http.StatusServiceUnavailable, "starting")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// authorized requires the bearer token when one is configured.
func (g *Gateway) authorized(h http.Handler) http.Handler {
	return admin.Bearer(g.cfg.AdminToken, h, func(w http.ResponseWriter) {
		writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
	})
}

// Readiness is the answer of /readyz.
type Readiness struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
}

// readiness says whether the gateway can serve a new device: listening,
// not draining, and in a cluster joined with at least one shard in its
// ring (else every HELLO would get 503).
func (g *Gateway) readiness() Readiness {
	switch {
	case !g.adm.up.Load():
		return Readiness{Reason: "starting: not listening yet"}
	case g.draining.Load():
		return Readiness{Reason: "draining"}
	case g.cfg.Cluster != nil && g.gossip == nil:
		return Readiness{Reason: "not joined to the cluster"}
	case g.cfg.Cluster != nil && g.Shards() == 0:
		return Readiness{Reason: "no backend shard in the ring"}
	}
	return Readiness{Ready: true}
}

func (g *Gateway) readyz(w http.ResponseWriter, _ *http.Request) {
	rd := g.readiness()
	status := http.StatusOK
	if !rd.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSONStatus(w, status, rd)
}

func (g *Gateway) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	g.metrics.set.WritePrometheus(w)
	metrics.WriteProcessMetrics(w)
}

// NodeInfo is the admin API's view of this gateway (GET /api/v1/info).
type NodeInfo struct {
	Name          string    `json:"name"`
	Role          string    `json:"role"`
	Version       string    `json:"version"`
	Commit        string    `json:"commit"`
	GoVersion     string    `json:"go_version"`
	ConfigHash    string    `json:"config_hash"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Listen        string    `json:"listen"`
	Admin         string    `json:"admin"`
	Gossip        string    `json:"gossip,omitempty"`
	Ready         bool      `json:"ready"`
	Draining      bool      `json:"draining"`
	Connections   int64     `json:"connections"`
	Sessions      int64     `json:"sessions"`
	Shards        int       `json:"shards"`
}

func (g *Gateway) nodeInfo(w http.ResponseWriter, _ *http.Request) {
	info := NodeInfo{Name: g.cfg.Node, Role: cluster.RoleGateway.String(), Version: g.cfg.Version, Commit: g.cfg.Commit,
		GoVersion: runtime.Version(), ConfigHash: *g.adm.configHash.Load(), StartedAt: g.adm.started.UTC(),
		UptimeSeconds: time.Since(g.adm.started).Round(time.Millisecond).Seconds(),
		Admin:         g.AdminAddr(), Gossip: g.GossipAddr(), Ready: g.readiness().Ready, Draining: g.draining.Load(),
		Connections: g.metrics.conns.Load(), Sessions: g.metrics.sessions.Load(), Shards: g.Shards()}
	if a := g.Addr(); a != nil {
		info.Listen = a.String()
	}
	writeJSON(w, info)
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
	// Since is when the attached connection was accepted.
	Since time.Time `json:"since,omitzero"`
	// Shard, Rule and Epoch: where the session lives on the backend (the
	// binding of the attached connection); empty with the embedded echo.
	Shard string `json:"shard,omitempty"`
	Rule  string `json:"rule,omitempty"`
	Epoch uint64 `json:"epoch,omitempty"`
	// CheckpointBytes is the size of the session's last checkpoint this
	// gateway holds; absent while it holds none, when a crash of the
	// shard would end the session with 503 (docs/guarantees.md).
	CheckpointBytes int `json:"checkpoint_bytes,omitempty"`
}

func (s *session) info() SessionInfo {
	s.mu.Lock()
	c := s.conn
	info := SessionInfo{Device: s.device, Session: s.idString(), Attached: c != nil,
		UpLast: s.upLast, DownSeq: s.downSeq, OutboxBytes: s.outbox.size()}
	if c != nil {
		info.Remote = c.remote()
		info.Since = time.Unix(0, c.acceptNs).UTC()
	}
	s.mu.Unlock()
	if c != nil && c.bind != nil {
		// The binding is read under the device's lock, taken once the
		// session's is released (the handler nests them the other way:
		// pmu, then the session's mu). The connection may have closed
		// meanwhile: the answer is then its last placement.
		c.Lock()
		w := c.bind.Where()
		info.CheckpointBytes = c.bind.CheckpointBytes()
		c.Unlock()
		info.Shard, info.Rule, info.Epoch = w.Shard, w.Rule, w.Epoch
	}
	return info
}

func (g *Gateway) sessionLookup(w http.ResponseWriter, r *http.Request) {
	s := g.sessions.get(r.PathValue("device"))
	if s == nil {
		writeError(w, http.StatusNotFound, "no session for device "+strconv.Quote(r.PathValue("device")))
		return
	}
	writeJSON(w, s.info())
}

// SessionPage is one page of GET /api/v1/sessions: sessions ordered by
// device id; Next, when not empty, is the ?after= of the next page.
type SessionPage struct {
	Sessions []SessionInfo `json:"sessions"`
	Next     string        `json:"next,omitempty"`
}

func (g *Gateway) sessionList(w http.ResponseWriter, r *http.Request) {
	limit := defaultPageSize
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want 1..%d", v, maxPageSize))
			return
		}
		limit = n
	}
	page := g.sessions.page(r.URL.Query().Get("after"), limit+1)
	out := SessionPage{Sessions: make([]SessionInfo, 0, min(len(page), limit))}
	for i, s := range page {
		if i == limit {
			out.Next = out.Sessions[limit-1].Device
			break
		}
		out.Sessions = append(out.Sessions, s.info())
	}
	writeJSON(w, out)
}

// page returns up to n sessions whose device ids sort after after, in
// device-id order. It keeps only the n smallest while it walks the table
// (binary insertion), so a page of a million sessions costs no sort of
// all of them.
func (t *sessionTable) page(after string, n int) []*session {
	out := make([]*session, 0, n)
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for dev, s := range sh.m {
			if dev <= after || (len(out) == n && dev >= out[n-1].device) {
				continue
			}
			j := sort.Search(len(out), func(k int) bool { return out[k].device > dev })
			if len(out) < n {
				out = append(out, nil)
			}
			copy(out[j+1:], out[j:])
			out[j] = s
		}
		sh.mu.Unlock()
	}
	return out
}

// KickRequest is the optional body of POST /api/v1/sessions/{device}/kick.
type KickRequest struct {
	// Code is the ERROR code the device gets: 409 (default; the session
	// was taken away, clients do not reconnect) or 503 (clients retry
	// with backoff).
	Code int `json:"code,omitempty"`
	// Reason goes into the ERROR message.
	Reason string `json:"reason,omitempty"`
}

// KickResult answers a kick.
type KickResult struct {
	Device string `json:"device"`
	Code   int    `json:"code"`
}

// kick sends the device's connection ERROR (PROTOCOL.md: the last frame
// before the close) and closes it; counted in switchyard_admin_kicks_total.
func (g *Gateway) kick(w http.ResponseWriter, r *http.Request) {
	var req KickRequest
	if !readBody(w, r, &req) {
		return
	}
	if req.Code == 0 {
		req.Code = protocol.CodeConflict
	}
	if req.Code != protocol.CodeConflict && req.Code != protocol.CodeUnavailable {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("code %d: want 409 or 503", req.Code))
		return
	}
	device := r.PathValue("device")
	var c *conn
	if s := g.sessions.get(device); s != nil {
		s.mu.Lock()
		c = s.conn
		s.mu.Unlock()
	}
	if c == nil || c.isClosing() { // closing: sent its last ERROR already (a kick, a timeout), lingering
		writeError(w, http.StatusNotFound, "device "+strconv.Quote(device)+" is not connected")
		return
	}
	msg := "kicked by the operator"
	if req.Reason != "" {
		msg += ": " + req.Reason
	}
	c.fail(req.Code, msg)
	g.adm.kicks.Inc()
	g.log.Info("device kicked", "device", device, "code", req.Code, "reason", req.Reason, "remote", r.RemoteAddr)
	writeJSON(w, KickResult{Device: device, Code: req.Code})
}

// DrainResult answers a drain request.
type DrainResult struct {
	Draining string `json:"draining"` // "gateway" or the shard's name
	Member   string `json:"member"`   // the gossip member asked
}

// drainSelf asks the owner of the gateway to drain it (DrainRequested):
// the same drain as SIGTERM, after which the process exits.
func (g *Gateway) drainSelf(w http.ResponseWriter, r *http.Request) {
	g.adm.drainOnce.Do(func() {
		g.log.Info("drain requested through the admin API", "remote", r.RemoteAddr)
		close(g.adm.drainReq)
	})
	writeJSONStatus(w, http.StatusAccepted, DrainResult{Draining: "gateway", Member: g.cfg.Node})
}

// drainShard asks a backend shard, by a cluster message
// (cluster.DrainRequest), to drain and leave as on SIGTERM: it announces
// draining, the gateways move its sessions with their state, it exits.
func (g *Gateway) drainShard(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if g.gossip == nil {
		writeError(w, http.StatusConflict, "not in a cluster: there are no shards to drain")
		return
	}
	var member string
	for _, m := range g.gossip.node.Members() {
		if m.Alive && m.Meta.Role == cluster.RoleBackend && m.Meta.Shard == name {
			member = m.Name
		}
	}
	if member == "" {
		writeError(w, http.StatusNotFound, "no live shard "+strconv.Quote(name)+" in the cluster")
		return
	}
	if err := g.gossip.node.SendTo(member, cluster.DrainRequest); err != nil {
		writeError(w, http.StatusBadGateway, fmt.Sprintf("shard %s: %v", name, err))
		return
	}
	g.log.Info("shard drain requested through the admin API", "shard", name, "member", member, "remote", r.RemoteAddr)
	writeJSONStatus(w, http.StatusAccepted, DrainResult{Draining: name, Member: member})
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
		writeError(w, http.StatusNotFound, "not in a cluster")
		return
	}
	out := []MemberInfo{}
	for _, m := range g.gossip.node.Members() {
		out = append(out, MemberInfo{Name: m.Name, Addr: m.Addr, Alive: m.Alive, Role: m.Meta.Role.String(),
			Shard: m.Meta.Shard, Link: m.Meta.Link, State: m.Meta.State.String(), Version: m.Meta.Version, Labels: m.Meta.Labels})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, out)
}

// RingInfo is the admin API's view of the gateway's ring.
type RingInfo struct {
	// Fingerprint identifies the ring's placement (hex): two gateways
	// with the same fingerprint place every device alike.
	Fingerprint string `json:"fingerprint"`
	// Shards are the names of the shards in the ring, sorted.
	Shards []string `json:"shards"`
	// Partitions is how many ring partitions each shard owns.
	Partitions map[string]int `json:"partitions"`
	// Members are the backend shards gossip knows, in the ring or not,
	// sorted by name.
	Members []RingShard `json:"members"`
}

// RingShard is one backend shard as the ring and gossip see it.
type RingShard struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	// State: active (in the ring), draining (leaving; its sessions move
	// away), down (active in gossip but unreachable from this gateway,
	// so out of its ring).
	State      string            `json:"state"`
	InRing     bool              `json:"in_ring"`
	Partitions int               `json:"partitions"`
	Version    string            `json:"version,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
}

func (g *Gateway) clusterRing(w http.ResponseWriter, _ *http.Request) {
	if g.ring == nil || g.gossip == nil {
		writeError(w, http.StatusNotFound, "not in a cluster")
		return
	}
	r := g.ring.Ring()
	loads := r.Loads()
	info := RingInfo{Fingerprint: fmt.Sprintf("%016x", r.Fingerprint()), Shards: []string{}, Partitions: loads,
		Members: []RingShard{}}
	inRing := map[string]bool{}
	for _, s := range r.Shards() {
		info.Shards = append(info.Shards, s.Name)
		inRing[s.Name] = true
	}
	sort.Strings(info.Shards)
	for _, m := range g.gossip.node.Members() {
		if !m.Alive || m.Meta.Role != cluster.RoleBackend {
			continue
		}
		rs := RingShard{Name: m.Meta.Shard, Addr: m.Meta.Link, State: m.Meta.State.String(), InRing: inRing[m.Meta.Shard],
			Partitions: loads[m.Meta.Shard], Version: m.Meta.Version, Labels: m.Meta.Labels}
		if m.Meta.State == cluster.StateActive && !rs.InRing {
			rs.State = "down"
		}
		info.Members = append(info.Members, rs)
	}
	sort.Slice(info.Members, func(i, j int) bool { return info.Members[i].Name < info.Members[j].Name })
	writeJSON(w, info)
}

// readBody decodes an optional JSON body into v; it answers 400 itself.
func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return false
	}
	return true
}

// AdminError is every API error's body.
type AdminError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSONStatus(w, status, AdminError{Error: msg})
}

func writeJSON(w http.ResponseWriter, v any) { writeJSONStatus(w, http.StatusOK, v) }

func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
