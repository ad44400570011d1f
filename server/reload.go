package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/switchyard-gw/switchyard/internal/keyedmac"
	"github.com/switchyard-gw/switchyard/protocol"
)

// Live reload. The settings a running gateway may change are kept apart
// from Config in a live value that is replaced as a whole, so the hot path
// reads them with one atomic pointer load and a reload never tears a
// frame's view of them:
//
//	Reload(next) ──▶ provision + Validate ──▶ diff against g.running
//	                                            │ restart-only fields: reported, not applied
//	                                            ▼ reloadable fields
//	                 g.live.Store(new live) · accept bucket · link keys · gossip keyring · log level
//
// What is reloadable and why (docs/configuration.md "Reload"):
//   - Rate, RateBurst, RateExcessClose, AcceptRate, AcceptBurst, ShedLag,
//     AbusePenalty, MaxConns:
//     admission and policing; the token buckets keep their state and are
//     capped at the new burst.
//   - AuthSecrets, ClusterKeys (resume tokens), LinkKeys, Cluster.Keys
//     (gossip keyring): key rotation without a restart. Links already
//     authenticated stay up; new links and tokens use the new keys.
//   - MaxOutbound, HandshakeTimeout, ResumeWindow, ResumeTokenTTL,
//     DrainTimeout, GoAwayRetry, Redirects: read afresh at each use
//     (a flush, an accept, a detach, a WELCOME, a drain).
//   - ProxyProtocolNetworks: read at each accept; a connection keeps the
//     decision taken when it was accepted.
//   - LogLevel, through LevelVar.
//   - TLSCertFile, TLSKeyFile, TLSClientCAFile, TLSClientCertDeviceID: the
//     files are re-read at every reload (same paths, new contents) and
//     new handshakes take them (tls.go); turning TLS on or off needs a
//     restart.
//
// Everything else is fixed at New: listeners, the heartbeat and MaxFrame
// (promised to connected devices in WELCOME), MaxOutbox and the shard
// side's buffers (sized per session already), the cluster membership.

// live is the reloadable part of the configuration, replaced whole.
type live struct {
	auth             *protocol.TokenVerifier // the auth secrets; nil: no auth
	resumeKeys       []*keyedmac.Key         // the cluster keys: the first signs, any verifies
	ratePerTick      float32                 // < 0: unlimited
	rateBurst        float32
	excessTicks      int64
	maxConns         int64
	maxOutbound      int
	handshakeTimeout time.Duration
	shedLag          int64 // ns; < 0: never shed
	penaltyTicks     int64 // the abuse penalty (penalty.go); 0: off
	resumeWindow     time.Duration
	resumeTokenTTL   time.Duration
	drainTimeout     time.Duration
	goAwayRetry      time.Duration
	redirects        []string
	proxyNets        []netip.Prefix // PROXY protocol's trusted sources; empty: off
}

// newLive derives the live settings of a provisioned cfg. randomKey is the
// resume key used when cfg has no cluster keys.
func (g *Gateway) newLive(cfg *Config, randomKey []byte) *live {
	lv := &live{
		rateBurst:        float32(cfg.RateBurst),
		excessTicks:      g.wheel.Ticks(cfg.RateExcessClose),
		maxConns:         int64(cfg.MaxConns),
		maxOutbound:      cfg.MaxOutbound,
		handshakeTimeout: cfg.HandshakeTimeout,
		shedLag:          cfg.ShedLag.Nanoseconds(),
		penaltyTicks:     max(g.wheel.Ticks(cfg.AbusePenalty), 0),
		resumeWindow:     cfg.ResumeWindow,
		resumeTokenTTL:   cfg.ResumeTokenTTL,
		drainTimeout:     cfg.DrainTimeout,
		goAwayRetry:      cfg.GoAwayRetry,
		redirects:        cfg.Redirects,
		proxyNets:        cfg.ProxyProtocolNetworks,
	}
	if len(cfg.AuthSecrets) > 0 {
		lv.auth = protocol.NewTokenVerifier(cfg.AuthSecrets)
	}
	keys := cfg.ClusterKeys
	if len(keys) == 0 {
		keys = [][]byte{randomKey}
	}
	for _, k := range keys {
		lv.resumeKeys = append(lv.resumeKeys, keyedmac.New(k))
	}
	lv.ratePerTick = float32(cfg.Rate * g.wheel.Tick().Seconds())
	if cfg.Rate < 0 {
		lv.ratePerTick = -1
	}
	return lv
}

// randomResumeKey is the resume key of a gateway without cluster keys:
// resumes then work on this process only.
func randomResumeKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

// setAcceptLimit applies the accept rate to the shared bucket, keeping its
// tokens (capped at the new burst).
func (b *bucket) set(rate float64, burst int, tick time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.perTick = rate * tick.Seconds()
	if rate < 0 {
		b.perTick = -1
	}
	b.burst = float64(burst)
	b.tokens = min(b.tokens, b.burst)
}

// ReloadReport says what a reload did. Names are the Config fields in
// snake_case ("rate", "auth_secrets", "cluster.keys"), which are also the
// keys of the configuration file (docs/configuration.md).
type ReloadReport struct {
	// Changed lists the settings that changed and were applied.
	Changed []string `json:"changed"`
	// RestartRequired lists the settings that changed but take effect
	// only after a restart; they were not applied.
	RestartRequired []string `json:"restart_required"`
}

// ErrNoReloader is returned by Reread when Config.Reloader is nil.
var ErrNoReloader = errors.New("server: reload: no configuration source (Config.Reloader is nil)")

// Reload applies next's reloadable settings to the running gateway and
// reports the others that changed as needing a restart. A next that fails
// validation changes nothing and returns the validation error. Counted in
// switchyard_config_reloads_total{result} and logged once.
func (g *Gateway) Reload(next Config) (ReloadReport, error) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	next = next.provision()
	if next.Cluster != nil { // applyReload may edit it: never the caller's
		c := *next.Cluster
		next.Cluster = &c
	}
	if next.Node == "" {
		next.Node = g.cfg.Node
	}
	if err := next.Validate(); err != nil {
		return ReloadReport{}, g.reloadDone(ReloadReport{}, resultInvalid, err)
	}
	st, err := g.reloadTLS(&next)
	if err != nil {
		return ReloadReport{}, g.reloadDone(ReloadReport{}, resultInvalid, err)
	}
	g.adm.configHash.Store(&next.ConfigHash)
	rep := diffConfig(&g.running, &next)
	if (g.tls == nil) != (next.TLSCertFile == "") {
		// TLS on or off changes what the listener speaks: a restart.
		rep = restartOnly(rep, tlsKeys)
	}
	if st != nil {
		g.tls.cur.Store(st)
		g.log.Info("tls certificate loaded", "file", next.TLSCertFile, "serial", st.serial)
	}
	failed, err := g.applyReload(&next, rep.Changed)
	rep.Changed = slices.DeleteFunc(rep.Changed, func(name string) bool { return slices.Contains(failed, name) })
	if err != nil {
		return rep, g.reloadDone(rep, resultError, &partialReload{err})
	}
	return rep, g.reloadDone(rep, resultOK, nil)
}

// Reread asks Config.Reloader for the configuration (the file and the
// environment again, with the command line's flags) and applies it with
// Reload. A Reloader error is an invalid reload: nothing changes.
func (g *Gateway) Reread(ctx context.Context) (ReloadReport, error) {
	if g.cfg.Reloader == nil {
		return ReloadReport{}, ErrNoReloader
	}
	next, err := g.cfg.Reloader(ctx)
	if err != nil {
		g.reloadMu.Lock()
		defer g.reloadMu.Unlock()
		return ReloadReport{}, g.reloadDone(ReloadReport{}, resultInvalid, err)
	}
	return g.Reload(next)
}

// partialReload is the error of a reload that passed validation but could
// not install every change: the report's Changed were applied all the same,
// so it is not "nothing changed" (the API answers it apart).
type partialReload struct{ err error }

func (e *partialReload) Error() string { return e.err.Error() }
func (e *partialReload) Unwrap() error { return e.err }

// Reload results, the label of switchyard_config_reloads_total.
const (
	resultOK      = "ok"
	resultInvalid = "invalid" // the new configuration was refused: nothing changed
	resultError   = "error"   // applying failed part way (see the log)
)

// reloadDone counts and logs one reload and returns err.
func (g *Gateway) reloadDone(rep ReloadReport, result string, err error) error {
	g.metrics.reloads[result].Inc()
	switch result {
	case resultOK:
		g.log.Info("configuration reloaded", "changed", rep.Changed, "restart_required", rep.RestartRequired)
	case resultInvalid:
		g.log.Error("configuration reload refused: running configuration kept", "err", err)
	default:
		g.log.Error("configuration reload failed", "changed", rep.Changed, "err", err)
	}
	return err
}

// applyReload installs the reloadable settings of next and returns the
// names of those it could not install (they keep their running value).
// The caller holds reloadMu.
func (g *Gateway) applyReload(next *Config, changed []string) (failed []string, err error) {
	var errs []error
	if slices.Contains(changed, "cluster.keys") && g.gossip != nil {
		if err := g.gossip.node.SetKeys(next.Cluster.Keys); err != nil {
			errs, failed = append(errs, err), append(failed, "cluster.keys")
			next.Cluster.Keys = g.running.Cluster.Keys
		}
	}
	if slices.Contains(changed, "link_keys") && g.remote != nil {
		if err := g.remote.SetKeys(next.LinkKeys); err != nil {
			errs, failed = append(errs, err), append(failed, "link_keys")
			next.LinkKeys = g.running.LinkKeys
		}
	}
	if slices.Contains(changed, "canary") {
		// SetRules moves the live sessions whose placement changed, by the
		// same path as a ring change (docs/operations.md "Canary roll-out").
		if err := g.SetRules(next.Canary); err != nil {
			errs, failed = append(errs, err), append(failed, "canary")
		}
	}
	if next.LevelVar != nil {
		next.LevelVar.Set(next.LogLevel)
	}
	g.acceptLimit.set(next.AcceptRate, next.AcceptBurst, g.wheel.Tick())
	g.live.Store(g.newLive(next, g.randomKey))
	// g.running takes the applied values only: what needs a restart keeps
	// its running value, so the next reload reports it again. (g.cfg is
	// never written after New: the handlers read it without a lock.)
	for _, name := range changed {
		if !slices.Contains(failed, name) {
			setField(&g.running, next, name)
		}
	}
	return failed, errors.Join(errs...)
}

// reloadable names the Config fields Reload applies (see the top of this
// file for why each is safe).
var reloadable = map[string]bool{
	"rate": true, "rate_burst": true, "rate_excess_close": true, "accept_rate": true,
	"accept_burst": true, "shed_lag": true, "abuse_penalty": true, "max_conns": true, "max_outbound": true, "handshake_timeout": true,
	"resume_window": true, "resume_token_ttl": true, "drain_timeout": true, "go_away_retry": true,
	"redirects": true, "auth_secrets": true, "cluster_keys": true, "link_keys": true,
	"cluster.keys": true, "log_level": true, "canary": true, "proxy_protocol_networks": true,
	"tls_cert_file": true, "tls_key_file": true, "tls_client_ca_file": true, "tls_client_cert_device_id": true,
}

// tlsKeys are the reloadable TLS settings, which need a restart when they
// turn TLS on or off.
var tlsKeys = []string{"tls_cert_file", "tls_key_file", "tls_client_ca_file", "tls_client_cert_device_id"}

// restartOnly moves names from rep.Changed to rep.RestartRequired.
func restartOnly(rep ReloadReport, names []string) ReloadReport {
	for _, n := range names {
		if slices.Contains(rep.Changed, n) {
			rep.Changed = slices.DeleteFunc(rep.Changed, func(s string) bool { return s == n })
			rep.RestartRequired = append(rep.RestartRequired, n)
		}
	}
	return rep
}

// notCompared are the Config fields that are not settings: hooks and
// objects handed in by the caller.
var notCompared = map[string]bool{
	"logger": true, "level_var": true, "reloader": true, "backends": true,
	"cluster.logger": true, "cluster.meta": true,
	"commit": true, "config_hash": true, // not settings; the hash is kept apart (adminState)
	"link_tls": true, // built from files each time (its pools hold functions); restart-only, docs/configuration.md
}

// diffConfig lists the settings that differ between cur and next, split
// into the reloadable and the restart-only ones.
func diffConfig(cur, next *Config) ReloadReport {
	var rep ReloadReport
	add := func(name string) {
		if reloadable[name] {
			rep.Changed = append(rep.Changed, name)
		} else {
			rep.RestartRequired = append(rep.RestartRequired, name)
		}
	}
	diffStruct("", reflect.ValueOf(cur).Elem(), reflect.ValueOf(next).Elem(), add)
	return rep
}

// diffStruct calls add for every field of a and b (same struct type) that
// differs; pointers to structs are compared field by field under prefix.
func diffStruct(prefix string, a, b reflect.Value, add func(string)) {
	for i := range a.NumField() {
		name := prefix + snake(a.Type().Field(i).Name)
		if notCompared[name] {
			continue
		}
		fa, fb := a.Field(i), b.Field(i)
		if fa.Kind() == reflect.Pointer && fa.Type().Elem().Kind() == reflect.Struct && !fa.IsNil() && !fb.IsNil() {
			diffStruct(name+".", fa.Elem(), fb.Elem(), add)
			continue
		}
		if !reflect.DeepEqual(fa.Interface(), fb.Interface()) && !(empty(fa) && empty(fb)) {
			add(name)
		}
	}
}

// setField copies the field called name (snake_case, "a.b" for nested)
// from src to dst.
func setField(dst, src *Config, name string) {
	d, s := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem()
	if strings.Contains(name, ".") {
		// Only cluster.keys is reloadable below the top level; copy the
		// struct so that the running config never shares it with next.
		c := *dst.Cluster
		c.Keys = src.Cluster.Keys
		dst.Cluster = &c
		return
	}
	for i := range d.NumField() {
		if snake(d.Type().Field(i).Name) == name {
			d.Field(i).Set(s.Field(i))
		}
	}
}

// snake turns a Go field name into snake_case: GoAwayRetry → go_away_retry.
func snake(s string) string {
	var b strings.Builder
	r := []rune(s)
	for i, c := range r {
		if unicode.IsUpper(c) {
			if i > 0 && (unicode.IsLower(r[i-1]) || i+1 < len(r) && unicode.IsLower(r[i+1])) {
				b.WriteByte('_')
			}
			c = unicode.ToLower(c)
		}
		b.WriteRune(c)
	}
	return b.String()
}

// empty reports whether v is a nil or empty slice or map: nil and empty
// lists are the same setting.
func empty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	}
	return false
}

// reload is POST /api/v1/reload: Reread, answered 200 with the report;
// 422 with {"error": ...} when the configuration was refused (nothing
// changed); 500 with the error and the report when it was applied except
// what failed (switchyard ctl reload reads exactly this).
func (g *Gateway) reload(w http.ResponseWriter, r *http.Request) {
	rep, err := g.Reread(r.Context())
	if rep.Changed == nil {
		rep.Changed = []string{}
	}
	if rep.RestartRequired == nil {
		rep.RestartRequired = []string{}
	}
	var partial *partialReload
	switch {
	case errors.As(err, &partial):
		writeJSONStatus(w, http.StatusInternalServerError, ReloadFailure{
			Error:        fmt.Sprintf("%v; applied all the same: %s", err, strings.Join(rep.Changed, ", ")),
			ReloadReport: rep})
	case err != nil:
		writeError(w, http.StatusUnprocessableEntity, err.Error())
	default:
		writeJSON(w, rep)
	}
}

// ReloadFailure is the 500 answer of POST /api/v1/reload: the
// configuration passed validation, Changed were applied, and Error says
// what could not be (that setting keeps its running value).
type ReloadFailure struct {
	Error string `json:"error"`
	ReloadReport
}
