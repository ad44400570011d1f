package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/switchyard-gw/switchyard/internal/trace"
)

// The admin API's fault location (docs/operations.md, "Finding one
// device's trouble"): POST /api/v1/trace, GET /api/v1/devices/{device}
// and GET /api/v1/disconnects.
//
// A trace travels as a cluster message (authenticated and encrypted by
// the gossip keys) to every member. A device lookup asks the other
// gateways directly, over their admin APIs, at the address each
// announces in its gossip metadata (cluster.Meta.Admin), with this
// gateway's admin token: gossip carries no request/reply, and an HTTP
// call per gateway, made only when an operator asks, keeps the answer
// exact and the gossip quiet. So the gateways of a cluster share one
// admin token and reach each other's admin listeners.

// peerTimeout bounds a device lookup's call to another gateway.
const peerTimeout = 2 * time.Second

// TraceRequest is the body of POST /api/v1/trace.
type TraceRequest struct {
	Device string `json:"device"`
	// For is how long the trace lasts, as a Go duration ("60s"); default
	// 60s, at most an hour.
	For string `json:"for,omitempty"`
}

// TraceResult answers POST /api/v1/trace.
type TraceResult struct {
	ID     string    `json:"trace_id"`
	Device string    `json:"device"`
	Until  time.Time `json:"until"` // on this gateway's clock
	// Members are the cluster members the request reached (this gateway
	// included); Failed the ones it did not, with why.
	Members []string          `json:"members"`
	Failed  map[string]string `json:"failed,omitempty"`
}

// startTrace starts a trace here and sends it to every other live member.
func (g *Gateway) startTrace(w http.ResponseWriter, r *http.Request) {
	var req TraceRequest
	if !readBody(w, r, &req) {
		return
	}
	d := trace.Default
	if req.For != "" {
		var err error
		if d, err = time.ParseDuration(req.For); err != nil {
			writeError(w, http.StatusBadRequest, "for: "+err.Error())
			return
		}
	}
	var idb [8]byte
	_, _ = rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	if err := trace.Check(req.Device, id, d); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	msg, err := trace.Encode(req.Device, id, d)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	req2, _ := trace.Decode(msg)
	now := time.Now()
	if err := g.trace.Apply(req2, now); err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	g.log.Info("trace: started", "trace_id", id, "device", req.Device, "for", d, "remote", r.RemoteAddr)
	res := TraceResult{ID: id, Device: req.Device, Until: now.Add(d).UTC(), Members: []string{g.cfg.Node}}
	if g.gossip != nil {
		var mu sync.Mutex
		var wg sync.WaitGroup
		self := g.gossip.node.Name()
		for _, m := range g.gossip.node.Members() {
			if !m.Alive || m.Name == self {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := g.gossip.node.SendTo(m.Name, msg)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if res.Failed == nil {
						res.Failed = map[string]string{}
					}
					res.Failed[m.Name] = err.Error()
					return
				}
				res.Members = append(res.Members, m.Name)
			}()
		}
		wg.Wait()
	}
	writeJSON(w, res)
}

// onMessage handles a cluster message to this gateway: trace requests.
func (g *Gateway) onMessage(m cluster.Message) {
	req, err := trace.Decode(m.Payload)
	if err == nil {
		err = g.trace.Apply(req, time.Now())
	}
	if err != nil {
		// Only members holding the cluster keys can send here: a bad
		// message is a version mismatch or a bug, worth a line each.
		g.log.Warn("cluster message refused", "from", m.From, "err", err)
		return
	}
	g.log.Info("trace: started", "trace_id", req.ID, "device", req.Device,
		"for", time.Duration(req.ForMs)*time.Millisecond, "from", m.From)
}

// DeviceReport is one gateway's knowledge of a device.
type DeviceReport struct {
	Gateway string `json:"gateway"`
	// Session is the device's session on this gateway, if it has one.
	Session *SessionInfo `json:"session,omitempty"`
	// LastDisconnect is the newest disconnect of the device in this
	// gateway's ring.
	LastDisconnect *Disconnect `json:"last_disconnect,omitempty"`
	// Error says why this gateway could not be asked.
	Error string `json:"error,omitempty"`
}

// DeviceLocation answers GET /api/v1/devices/{device}: where the device
// is in the whole cluster and why it last disconnected.
type DeviceLocation struct {
	Device string `json:"device"`
	// Gateway holds the device's connection ("" when no gateway does).
	Gateway  string    `json:"gateway,omitempty"`
	Shard    string    `json:"shard,omitempty"`
	Rule     string    `json:"rule,omitempty"`
	Epoch    uint64    `json:"epoch,omitempty"`
	Since    time.Time `json:"since,omitzero"`
	Remote   string    `json:"remote,omitempty"`
	Session  string    `json:"session,omitempty"`
	Attached bool      `json:"attached"`
	// LastDisconnect is the newest disconnect of the device on any gateway.
	LastDisconnect *Disconnect     `json:"last_disconnect,omitempty"`
	Gateways       []*DeviceReport `json:"gateways"`
}

// localReport is what this gateway knows of device.
func (g *Gateway) localReport(device string) *DeviceReport {
	rep := &DeviceReport{Gateway: g.cfg.Node}
	if s := g.sessions.get(device); s != nil {
		info := s.info()
		rep.Session = &info
	}
	if d := g.disconnects.recent(device, 1); len(d) > 0 {
		rep.LastDisconnect = &d[0]
	}
	return rep
}

// deviceLookup answers GET /api/v1/devices/{device}: this gateway only
// with ?local=1 (how gateways ask each other), else the whole cluster.
func (g *Gateway) deviceLookup(w http.ResponseWriter, r *http.Request) {
	device := r.PathValue("device")
	if r.URL.Query().Get("local") != "" {
		writeJSON(w, g.localReport(device))
		return
	}
	loc := DeviceLocation{Device: device, Gateways: []*DeviceReport{g.localReport(device)}}
	loc.Gateways = append(loc.Gateways, g.askPeers(r.Context(), device)...)
	for _, rep := range loc.Gateways {
		if s := rep.Session; s != nil && (s.Attached || loc.Gateway == "") {
			loc.Gateway, loc.Shard, loc.Rule, loc.Epoch = rep.Gateway, s.Shard, s.Rule, s.Epoch
			loc.Since, loc.Remote, loc.Session, loc.Attached = s.Since, s.Remote, s.Session, s.Attached
		}
		if d := rep.LastDisconnect; d != nil && (loc.LastDisconnect == nil || d.At.After(loc.LastDisconnect.At)) {
			loc.LastDisconnect = d
		}
	}
	writeJSON(w, loc)
}

// askPeers asks every other live gateway in gossip what it knows of device.
func (g *Gateway) askPeers(ctx context.Context, device string) []*DeviceReport {
	if g.gossip == nil {
		return nil
	}
	self := g.gossip.node.Name()
	var out []*DeviceReport
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range g.gossip.node.Members() {
		if !m.Alive || m.Name == self || m.Meta.Role != cluster.RoleGateway {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep := g.askPeer(ctx, m, device)
			mu.Lock()
			out = append(out, rep)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func (g *Gateway) askPeer(ctx context.Context, m cluster.Member, device string) *DeviceReport {
	rep := &DeviceReport{Gateway: m.Name}
	addr, err := peerAdmin(m)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	u := "http://" + addr + "/api/v1/devices/" + url.PathEscape(device) + "?local=1"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	if g.cfg.AdminToken != "" {
		req.Header.Set("Authorization", "Bearer "+g.cfg.AdminToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		rep.Error = "admin API answered " + resp.Status
		return rep
	}
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(rep); err != nil {
		rep.Error = "admin API answer: " + err.Error()
		rep.Gateway = m.Name
	}
	return rep
}

// peerAdmin is the admin address a gateway announces, its host taken
// from the gossip address when the announced one is unspecified.
func peerAdmin(m cluster.Member) (string, error) {
	if m.Meta.Admin == "" {
		return "", fmt.Errorf("gateway %s announces no admin address", m.Name)
	}
	host, port, err := net.SplitHostPort(m.Meta.Admin)
	if err != nil {
		return "", fmt.Errorf("gateway %s: admin address %q: %v", m.Name, m.Meta.Admin, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if host, _, err = net.SplitHostPort(m.Addr); err != nil {
			return "", fmt.Errorf("gateway %s: gossip address %q: %v", m.Name, m.Addr, err)
		}
	}
	return net.JoinHostPort(host, port), nil
}

// disconnectList answers GET /api/v1/disconnects?device=ID&limit=N:
// this gateway's recent disconnects, newest first.
func (g *Gateway) disconnectList(w http.ResponseWriter, r *http.Request) {
	limit := defaultPageSize
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxDisconnectRing {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want 1..%d", v, MaxDisconnectRing))
			return
		}
		limit = n
	}
	writeJSON(w, g.disconnects.recent(r.URL.Query().Get("device"), limit))
}
