package trace

import (
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Kind is the "k" of the trace cluster message, beside the backend's
// other kinds (forward, kick, drain).
const Kind = "trace"

// Request is the cluster message (cluster.Node.SendTo, so authenticated
// and encrypted with the cluster's keys) that turns tracing on at one
// member: msgpack {"k": "trace", "d": device, "t": trace id, "f":
// milliseconds}. It carries a duration, not a deadline, so that members
// whose clocks disagree still stop about together: each one counts from
// when it received the request.
type Request struct {
	K      string `msgpack:"k"`
	Device string `msgpack:"d"`
	ID     string `msgpack:"t"`
	ForMs  int64  `msgpack:"f"`
}

// Encode returns the message for device, id and d.
func Encode(device, id string, d time.Duration) ([]byte, error) {
	return msgpack.Marshal(&Request{K: Kind, Device: device, ID: id, ForMs: d.Milliseconds()})
}

// Decode parses and checks a trace message.
func Decode(b []byte) (Request, error) {
	var r Request
	if err := msgpack.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("trace: bad message: %w", err)
	}
	if r.K != Kind {
		return r, fmt.Errorf("trace: bad message: kind %q", r.K)
	}
	if err := Check(r.Device, r.ID, time.Duration(r.ForMs)*time.Millisecond); err != nil {
		return r, fmt.Errorf("trace: bad message: %w", err)
	}
	return r, nil
}

// Check validates a trace request's fields.
func Check(device, id string, d time.Duration) error {
	switch {
	case device == "" || len(device) > MaxDevice:
		return fmt.Errorf("device id of %d bytes: want 1..%d", len(device), MaxDevice)
	case id == "" || len(id) > MaxID:
		return fmt.Errorf("trace id of %d bytes: want 1..%d", len(id), MaxID)
	case d <= 0 || d > MaxDuration:
		return fmt.Errorf("duration %v: want (0, %v]", d, MaxDuration)
	}
	return nil
}

// Apply starts the trace a message asks for, counting from now.
func (t *Table) Apply(r Request, now time.Time) error {
	return t.Start(r.Device, r.ID, now.Add(time.Duration(r.ForMs)*time.Millisecond))
}
