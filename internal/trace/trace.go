package trace

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of a trace request.
const (
	MaxTraces   = 64               // devices traced at once per member
	MaxDuration = time.Hour        // longest trace
	MaxDevice   = 256              // longest device id accepted in a request
	MaxID       = 64               // longest trace id accepted in a request
	Default     = 60 * time.Second // ctl trace without --for
)

// ErrFull is returned by Start when MaxTraces traces are active.
var ErrFull = errors.New("trace: too many active traces")

type entry struct {
	id    string
	until time.Time
}

// Table holds the active traces of one member. The zero Table is empty
// and ready; its methods are safe from any goroutine.
type Table struct {
	n   atomic.Int32 // entries in m (some may have expired): Any
	mu  sync.Mutex
	m   map[string]entry
	now func() time.Time // time.Now; tests set it
}

// Any reports whether some trace may be active: the one check the frame
// path makes, a single atomic load.
func (t *Table) Any() bool { return t.n.Load() != 0 }

func (t *Table) clock() time.Time {
	if t.now != nil {
		return t.now()
	}
	return time.Now()
}

// Start traces device under id until until (a later request for the same
// device replaces the earlier one). It fails when the table is full of
// traces that have not expired.
func (t *Table) Start(device, id string, until time.Time) error {
	if device == "" || len(device) > MaxDevice || id == "" || len(id) > MaxID {
		return fmt.Errorf("trace: bad request: device %d bytes, id %d bytes", len(device), len(id))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]entry{}
	}
	if _, ok := t.m[device]; !ok && len(t.m) >= MaxTraces {
		t.purgeLocked(t.clock())
		if len(t.m) >= MaxTraces {
			return ErrFull
		}
	}
	t.m[device] = entry{id: id, until: until}
	t.n.Store(int32(len(t.m)))
	return nil
}

// Lookup returns the trace id of device when it is traced now. Expired
// traces are removed here, on use: once every trace has expired the next
// Lookup empties the table and Any is false again.
func (t *Table) Lookup(device string) (string, bool) {
	if !t.Any() {
		return "", false
	}
	now := t.clock()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[device]
	if ok && now.Before(e.until) {
		return e.id, true
	}
	t.purgeLocked(now)
	return "", false
}

// purgeLocked removes the expired traces.
func (t *Table) purgeLocked(now time.Time) {
	for d, e := range t.m {
		if !now.Before(e.until) {
			delete(t.m, d)
		}
	}
	t.n.Store(int32(len(t.m)))
}

// Active is one active trace.
type Active struct {
	Device string    `json:"device"`
	ID     string    `json:"trace_id"`
	Until  time.Time `json:"until"`
}

// List returns the traces that have not expired.
func (t *Table) List() []Active {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.purgeLocked(t.clock())
	out := make([]Active, 0, len(t.m))
	for d, e := range t.m {
		out = append(out, Active{Device: d, ID: e.id, Until: e.until})
	}
	return out
}
