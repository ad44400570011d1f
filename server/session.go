package server

import (
	"crypto/rand"
	"encoding/base64"
	"hash/maphash"
	"sync"

	"github.com/switchyard-gw/switchyard/internal/timewheel"
)

// session is a device's session: it outlives its connection for
// ResumeWindow so that the device can resume it. Lock order: a table shard's
// mu, then session.mu, then conn.wmu.
type session struct {
	mu     sync.Mutex
	table  *sessionTable
	id     [16]byte
	device string
	conn   *conn // attached connection, nil while detached
	expiry timewheel.Entry

	upLast  uint32 // highest reliable upstream seq accepted (WELCOME last)
	downSeq uint32 // last reliable downstream seq assigned
	outbox  outbox // reliable downstream frames the device has not ACKed

	dprev, dnext *session // in the table's detached list (under its detMu); nil when not
}

func (s *session) idString() string { return base64.RawURLEncoding.EncodeToString(s.id[:]) }

// sessionTable maps device ids to sessions, sharded so that no lock is
// shared by all connections.
type sessionTable struct {
	g      *Gateway
	seed   maphash.Seed
	shards [64]tableShard

	// The detached sessions, oldest detach first, for MaxDetached. detMu
	// is a leaf: it is taken with a session's mu held or alone, never
	// before a shard's mu; it is off the frame path (detach, resume,
	// expiry only).
	detMu       sync.Mutex
	det         session // the list's sentinel: det.dnext is the oldest
	detN        int
	maxDetached int
}

type tableShard struct {
	mu sync.Mutex
	m  map[string]*session
}

func newSessionTable(g *Gateway) *sessionTable {
	t := &sessionTable{g: g, seed: maphash.MakeSeed(), maxDetached: g.cfg.maxDetached()}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*session)
	}
	t.det.dprev, t.det.dnext = &t.det, &t.det
	return t
}

func (t *sessionTable) shard(device string) *tableShard {
	return &t.shards[maphash.String(t.seed, device)%uint64(len(t.shards))]
}

// attach binds c to device's session: the one named by resumeID when it is
// still there, else a new one that replaces any other. With adopt (remote
// backends, where the shard holds the state) a verified resumeID that is
// not here names the new session, and counts as resumed: the shard decides.
// It returns the session, whether it was resumed, and the connection it was
// taken from (to be sent 409), if any.
func (t *sessionTable) attach(c *conn, device string, resumeID *[16]byte, adopt bool) (s *session, resumed bool, prev *conn) {
	sh := t.shard(device)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	old := sh.m[device]
	if old != nil {
		old.mu.Lock()
		prev = old.conn
		if resumeID != nil && old.id == *resumeID {
			old.conn = c
			t.undetach(old)
			old.mu.Unlock()
			t.g.wheel.Cancel(&old.expiry)
			if prev == nil {
				t.g.metrics.attached.Add(1)
			}
			return old, true, prev
		}
		old.conn = nil // fenced: its connection can no longer act on it
		old.outbox.release()
		t.undetach(old)
		old.mu.Unlock()
		t.g.wheel.Cancel(&old.expiry)
	} else {
		t.g.metrics.sessions.Add(1)
	}
	s = &session{table: t, device: device, conn: c}
	s.expiry.Owner = s
	if adopt && resumeID != nil {
		s.id, resumed = *resumeID, true
	} else {
		_, _ = rand.Read(s.id[:])
	}
	sh.m[device] = s
	if prev == nil {
		t.g.metrics.attached.Add(1) // else the session taken over was attached
	}
	return s, resumed, prev
}

// detach unbinds c from s and starts the resume window. When that makes
// more than MaxDetached sessions detached, the one detached the longest
// ago is forgotten.
func (t *sessionTable) detach(s *session, c *conn) {
	s.mu.Lock()
	mine := s.conn == c
	var oldest *session
	if mine {
		s.conn = nil
		oldest = t.addDetached(s)
	}
	s.mu.Unlock()
	if mine {
		t.g.metrics.attached.Add(-1)
		t.g.wheel.Schedule(&s.expiry, t.g.live.Load().resumeWindow)
	}
	if oldest != nil && t.forget(oldest) {
		t.g.wheel.Cancel(&oldest.expiry)
		t.g.metrics.detachedEvicted.Inc()
	}
}

// addDetached appends s (whose mu is held) to the detached list and takes
// the oldest off it when the list is over its cap; the caller forgets that
// one (after releasing s.mu: forget takes a shard's lock).
func (t *sessionTable) addDetached(s *session) (oldest *session) {
	t.detMu.Lock()
	defer t.detMu.Unlock()
	if s.dnext != nil {
		return nil
	}
	s.dprev, s.dnext = t.det.dprev, &t.det
	t.det.dprev.dnext = s
	t.det.dprev = s
	t.detN++
	if t.detN <= t.maxDetached {
		return nil
	}
	oldest = t.det.dnext
	t.unlinkLocked(oldest)
	return oldest
}

// undetach takes s (whose mu is held) off the detached list, if it is on it.
func (t *sessionTable) undetach(s *session) {
	t.detMu.Lock()
	if s.dnext != nil {
		t.unlinkLocked(s)
	}
	t.detMu.Unlock()
}

func (t *sessionTable) unlinkLocked(s *session) {
	s.dprev.dnext = s.dnext
	s.dnext.dprev = s.dprev
	s.dprev, s.dnext = nil, nil
	t.detN--
}

// detached is how many sessions are detached now.
func (t *sessionTable) detached() int {
	t.detMu.Lock()
	defer t.detMu.Unlock()
	return t.detN
}

// Expire implements timewheel.Expirer: the resume window ended without a
// resume, so the session is forgotten.
func (s *session) Expire(*timewheel.Entry) { s.table.forget(s) }

// forget removes s from the table if it is still there without a
// connection (a resume may have taken it meanwhile), and reports whether
// it did.
func (t *sessionTable) forget(s *session) bool {
	sh := t.shard(s.device)
	sh.mu.Lock()
	s.mu.Lock()
	gone := s.conn == nil && sh.m[s.device] == s
	if gone {
		delete(sh.m, s.device)
		s.outbox.release()
		t.undetach(s)
	}
	s.mu.Unlock()
	sh.mu.Unlock()
	if gone {
		t.g.metrics.sessions.Add(-1)
	}
	return gone
}

// get returns device's session, if any.
func (t *sessionTable) get(device string) *session {
	sh := t.shard(device)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.m[device]
}

// conns returns every attached connection.
func (t *sessionTable) conns() []*conn {
	var out []*conn
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for _, s := range sh.m {
			s.mu.Lock()
			if s.conn != nil {
				out = append(out, s.conn)
			}
			s.mu.Unlock()
		}
		sh.mu.Unlock()
	}
	return out
}
