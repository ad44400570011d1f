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
}

func (s *session) idString() string { return base64.RawURLEncoding.EncodeToString(s.id[:]) }

// sessionTable maps device ids to sessions, sharded so that no lock is
// shared by all connections.
type sessionTable struct {
	g      *Gateway
	seed   maphash.Seed
	shards [64]tableShard
}

type tableShard struct {
	mu sync.Mutex
	m  map[string]*session
}

func newSessionTable(g *Gateway) *sessionTable {
	t := &sessionTable{g: g, seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*session)
	}
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
			old.mu.Unlock()
			t.g.wheel.Cancel(&old.expiry)
			if prev == nil {
				t.g.metrics.attached.Add(1)
			}
			return old, true, prev
		}
		old.conn = nil // fenced: its connection can no longer act on it
		old.outbox.release()
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

// detach unbinds c from s and starts the resume window.
func (t *sessionTable) detach(s *session, c *conn) {
	s.mu.Lock()
	mine := s.conn == c
	if mine {
		s.conn = nil
	}
	s.mu.Unlock()
	if mine {
		t.g.metrics.attached.Add(-1)
		t.g.wheel.Schedule(&s.expiry, t.g.live.Load().resumeWindow)
	}
}

// Expire implements timewheel.Expirer: the resume window ended without a
// resume, so the session is forgotten.
func (s *session) Expire(*timewheel.Entry) {
	t := s.table
	sh := t.shard(s.device)
	sh.mu.Lock()
	s.mu.Lock()
	gone := s.conn == nil && sh.m[s.device] == s
	if gone {
		delete(sh.m, s.device)
		s.outbox.release()
	}
	s.mu.Unlock()
	sh.mu.Unlock()
	if gone {
		t.g.metrics.sessions.Add(-1)
	}
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
