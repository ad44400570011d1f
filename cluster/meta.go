package cluster

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"
)

// MetaMaxSize is the largest encoded Meta memberlist carries (its
// MetaMaxSize). memberlist panics when a delegate returns more, so every
// Meta is encoded and checked before it is handed over.
const MetaMaxSize = memberlist.MetaMaxSize

// Role is what a member is in the Switchyard cluster.
type Role uint8

// Roles. The zero Role is invalid for the local node; a remote member with
// a role this version does not know keeps its number (see Role.Known).
const (
	RoleGateway Role = 1 // terminates device connections
	RoleBackend Role = 2 // serves one backend shard over gateway links
)

// Known reports whether r is a role this version understands.
func (r Role) Known() bool { return r == RoleGateway || r == RoleBackend }

func (r Role) String() string {
	switch r {
	case RoleGateway:
		return "gateway"
	case RoleBackend:
		return "backend"
	}
	return "role(" + strconv.Itoa(int(r)) + ")"
}

// State is a member's own view of its availability. Only active backend
// shards take new sessions; a draining member is on its way out.
type State uint8

// States. The zero State is active.
const (
	StateActive   State = 0 // serving, takes new sessions
	StateDraining State = 1 // leaving: hands its sessions over, takes no new ones
)

// Known reports whether s is a state this version understands.
func (s State) Known() bool { return s == StateActive || s == StateDraining }

func (s State) String() string {
	switch s {
	case StateActive:
		return "active"
	case StateDraining:
		return "draining"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Meta is the metadata every member gossips about itself. It travels as a
// msgpack map with one-letter keys and must encode to at most MetaMaxSize
// bytes (EncodeMeta checks).
type Meta struct {
	// Role is gateway or backend.
	Role Role
	// Shard is the backend shard name; empty for gateways.
	Shard string
	// Link is host:port of the member's link listener (backends) or of the
	// gateway's, for the backend SDK to reach it.
	Link string
	// State is active or draining.
	State State
	// Version is the software version, for canary rules and upgrades.
	Version string
	// Admin is host:port of a gateway's admin API, for the other gateways
	// to ask it about a device (`switchyard ctl session`); empty when it
	// has none. A host left unspecified (0.0.0.0, [::]) means the
	// member's gossip address.
	Admin string
	// Labels are free-form tags (canary selection and the like). They are
	// what usually makes metadata too large: keep them short.
	Labels map[string]string
}

// Wire keys. Short on purpose: the whole Meta must fit in 512 bytes.
const (
	keyRole    = "r"
	keyShard   = "s"
	keyLink    = "k"
	keyState   = "t"
	keyVersion = "v"
	keyLabels  = "l"
	keyAdmin   = "a"
)

// Clone returns a deep copy of m (Labels is a new map).
func (m Meta) Clone() Meta {
	m.Labels = maps.Clone(m.Labels)
	return m
}

// Equal reports whether m and o carry the same values (nil and empty
// Labels are equal).
func (m Meta) Equal(o Meta) bool {
	return m.Role == o.Role && m.Shard == o.Shard && m.Link == o.Link &&
		m.State == o.State && m.Version == o.Version && m.Admin == o.Admin && maps.Equal(m.Labels, o.Labels)
}

// Validate checks what the local node may announce: a known role and
// state, a shard name for backends, non-empty label keys, and the size.
func (m Meta) Validate() error {
	switch {
	case !m.Role.Known():
		return fmt.Errorf("%w: unknown role %v", ErrInvalidMeta, m.Role)
	case !m.State.Known():
		return fmt.Errorf("%w: unknown state %v", ErrInvalidMeta, m.State)
	case m.Role == RoleBackend && m.Shard == "":
		return fmt.Errorf("%w: a backend needs a shard name", ErrInvalidMeta)
	}
	if _, ok := m.Labels[""]; ok {
		return fmt.Errorf("%w: empty label key", ErrInvalidMeta)
	}
	_, err := EncodeMeta(m)
	return err
}

// EncodeMeta encodes m for gossip. The encoding is deterministic (label
// keys sorted, empty fields left out) so that re-announcing the same Meta
// is not seen as a change by memberlist, which compares bytes. It returns
// a *MetaSizeError when the result exceeds MetaMaxSize.
func EncodeMeta(m Meta) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	fields := []struct {
		key string
		set bool
		put func() error
	}{
		{keyRole, m.Role != 0, func() error { return enc.EncodeUint(uint64(m.Role)) }},
		{keyShard, m.Shard != "", func() error { return enc.EncodeString(m.Shard) }},
		{keyLink, m.Link != "", func() error { return enc.EncodeString(m.Link) }},
		{keyState, m.State != 0, func() error { return enc.EncodeUint(uint64(m.State)) }},
		{keyVersion, m.Version != "", func() error { return enc.EncodeString(m.Version) }},
		{keyLabels, len(m.Labels) > 0, func() error { return encodeLabels(enc, m.Labels) }},
		{keyAdmin, m.Admin != "", func() error { return enc.EncodeString(m.Admin) }},
	}
	n := 0
	for _, f := range fields {
		if f.set {
			n++
		}
	}
	if err := enc.EncodeMapLen(n); err != nil {
		return nil, err
	}
	for _, f := range fields {
		if !f.set {
			continue
		}
		if err := enc.EncodeString(f.key); err != nil {
			return nil, err
		}
		if err := f.put(); err != nil {
			return nil, err
		}
	}
	if buf.Len() > MetaMaxSize {
		return nil, &MetaSizeError{Size: buf.Len(), Limit: MetaMaxSize}
	}
	return buf.Bytes(), nil
}

func encodeLabels(enc *msgpack.Encoder, labels map[string]string) error {
	if err := enc.EncodeMapLen(len(labels)); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if err := enc.EncodeString(k); err != nil {
			return err
		}
		if err := enc.EncodeString(labels[k]); err != nil {
			return err
		}
	}
	return nil
}

// DecodeMeta decodes metadata received from the network. It never panics
// and allocates in proportion to len(b) only: input over MetaMaxSize is
// refused, every length prefix is checked against the bytes left, unknown
// keys are skipped (newer members may add fields) and unknown role or
// state numbers are kept as they are.
func DecodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) > MetaMaxSize {
		return m, &MetaSizeError{Size: len(b), Limit: MetaMaxSize}
	}
	if len(b) == 0 {
		return m, nil // a member without metadata
	}
	r := bytes.NewReader(b)
	d := msgpack.NewDecoder(r)
	if err := decodeMetaMap(d, r, &m); err != nil {
		return Meta{}, fmt.Errorf("%w: %v", ErrInvalidMeta, err)
	}
	if r.Len() != 0 {
		return Meta{}, fmt.Errorf("%w: %d trailing bytes", ErrInvalidMeta, r.Len())
	}
	return m, nil
}

func decodeMetaMap(d *msgpack.Decoder, r *bytes.Reader, m *Meta) error {
	n, err := mapLen(d, r)
	if err != nil {
		return err
	}
	for range n {
		key, err := decodeStr(d, r)
		if err != nil {
			return err
		}
		if err := decodeMetaField(d, r, m, key); err != nil {
			return fmt.Errorf("key %q: %w", key, err)
		}
	}
	return nil
}

func decodeMetaField(d *msgpack.Decoder, r *bytes.Reader, m *Meta, key string) error {
	var err error
	switch key {
	case keyRole:
		var v uint8
		v, err = decodeUint8(d)
		m.Role = Role(v)
	case keyState:
		var v uint8
		v, err = decodeUint8(d)
		m.State = State(v)
	case keyShard:
		m.Shard, err = decodeStr(d, r)
	case keyLink:
		m.Link, err = decodeStr(d, r)
	case keyVersion:
		m.Version, err = decodeStr(d, r)
	case keyLabels:
		m.Labels, err = decodeLabels(d, r)
	case keyAdmin:
		m.Admin, err = decodeStr(d, r)
	default:
		err = d.Skip()
	}
	return err
}

func decodeLabels(d *msgpack.Decoder, r *bytes.Reader) (map[string]string, error) {
	n, err := mapLen(d, r)
	if err != nil || n == 0 {
		return nil, err
	}
	labels := make(map[string]string, n)
	for range n {
		k, err := decodeStr(d, r)
		if err != nil {
			return nil, err
		}
		v, err := decodeStr(d, r)
		if err != nil {
			return nil, err
		}
		labels[k] = v
	}
	return labels, nil
}

// mapLen reads a map header; nil counts as empty. Every entry takes at
// least two bytes, so a count beyond half the bytes left is a lie that
// would otherwise make the caller preallocate a huge map.
func mapLen(d *msgpack.Decoder, r *bytes.Reader) (int, error) {
	n, err := d.DecodeMapLen()
	if err != nil {
		return 0, err
	}
	if n > r.Len()/2 {
		return 0, fmt.Errorf("map of %d entries in %d bytes", n, r.Len())
	}
	return max(n, 0), nil
}

// decodeStr reads a str (or bin) value whose length fits in the input.
func decodeStr(d *msgpack.Decoder, r *bytes.Reader) (string, error) {
	n, err := d.DecodeBytesLen()
	if err != nil {
		return "", err
	}
	if n > r.Len() {
		return "", fmt.Errorf("string of %d bytes in %d", n, r.Len())
	}
	if n <= 0 {
		return "", nil
	}
	b := make([]byte, n)
	if err := d.ReadFull(b); err != nil {
		return "", err
	}
	return string(b), nil
}

func decodeUint8(d *msgpack.Decoder) (uint8, error) {
	v, err := d.DecodeInt64()
	if err != nil {
		return 0, err
	}
	if v < 0 || v > 255 {
		return 0, fmt.Errorf("value %d out of range", v)
	}
	return uint8(v), nil
}
