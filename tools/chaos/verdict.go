package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"
)

// Violation kinds, as the summary reports them.
const (
	kLost       = "lost"                  // a reliable frame (or its reply) never arrived: up_lost, down_lost, unacked, unanswered at the end
	kDup        = "dup"                   // one arrived twice: up_dup, down_dup
	kReorder    = "reorder"               // one arrived late: up_reorder, down_reorder, ack_regress
	kReset      = "reset"                 // the session's state started over: up_reset (count back at 1), resume_failed, reset_unanswered
	kTwice      = "twice"                 // the counter counted beyond the frames sent: a frame handled twice (up_twice)
	kDisconnect = "unexpected-disconnect" // a connection ended (or a handshake failed) without an event that explains it
)

// violationKinds is every kind, in summary order.
var violationKinds = []string{kLost, kDup, kReorder, kReset, kTwice, kDisconnect}

// kindOf maps loadgen's incident names (tools/loadgen/incidents.go) to kinds.
var kindOf = map[string]string{
	"up_lost": kLost, "down_lost": kLost, "unacked": kLost, "unanswered": kLost,
	"up_dup": kDup, "down_dup": kDup,
	"up_reorder": kReorder, "down_reorder": kReorder, "ack_regress": kReorder,
	"up_reset": kReset, "resume_failed": kReset, "reset_unanswered": kReset,
	"up_twice":   kTwice,
	"disconnect": kDisconnect, "handshake": kDisconnect,
}

// allowance is what one event kind may cause while it runs (from its
// signal until --grace after it settled), and the statement of
// docs/guarantees.md it rests on. Ends are connection ends by loadgen's
// cause (goaway, eof, reset, error_<code>, …): for a gateway event only on
// that gateway, for a shard event on any. Kinds are the violation kinds
// (other than unexpected-disconnect) it may cause. Anything else fails
// the run. docs/chaos.md shows the same table.
type allowance struct {
	Ends  []string
	Kinds []string
	Rests string
}

// Today's rows. Shard drain and join, gateway drain and kill allow no
// loss, duplicate, reordering or reset: the state lives on the shards and
// devices resume with their token. A shard that dies (or is dropped as
// silent) has its sessions reopened from their checkpoints: no loss, no
// reset; a frame it handled whose ACK had not reached the gateway is
// handled again (its reply arrives twice: dup), and a session with no
// checkpoint yet gets 503.
var allowed = map[string]allowance{
	drainShard: {Rests: `"Planned shard leave and shard join": "The device sees nothing: no GOAWAY, no ERROR, no reconnect"; "Reliable upstream: nothing lost, duplicated or reordered"; "Handler state moves"`},
	addShard:   {Rests: `"Planned shard leave and shard join" (a join, and the restart of a drained shard): as drain-shard`},
	drainGateway: {Ends: []string{"goaway", "error_503", "eof", "reset"},
		Rests: `"Connection-level promises": "a draining gateway ... GOAWAY ... a device that follows it resumes its session on that gateway with the shard's state"; "Resume on any gateway"; operations.md: while draining "new connections and HELLOs get ERROR 503"; "Placement": the restarted gateway answers 503 until a shard is on its ring`},
	killGateway: {Ends: []string{"eof", "reset", "error_503"},
		Rests: `"Through a cluster": "Resume on any gateway: the shard holds the session ... resumed true, WELCOME last = what the shard accepted, and the unacknowledged downstream DATA"; "Placement": the restarted gateway answers 503 until a shard is on its ring`},
	shardSilent: {Ends: []string{"error_503"}, Kinds: []string{kDup}, Rests: `unplanned (silent.go): "A silent or crashed shard is detected by the links' heartbeat within LinkTimeout ... its sessions are reopened on the shard the ring names next"; "Shard crash": as kill-shard`},
	linkLost:    {Ends: []string{"error_503"}, Rests: `unplanned (silent.go): "A lost link: the devices of its sessions get 503 and reconnect; the shard keeps their sessions for the resume window, so they resume"`},
	killShard:   {Ends: []string{"error_503"}, Kinds: []string{kDup}, Rests: `"Shard crash": "Nothing ACKed is lost, nothing is reordered, the state is not reset"; "What a crash can repeat: a frame the crashed shard handled whose ACK had not reached the gateway is handled again ... the counter's reply for it arrives twice"; "a session with no usable checkpoint ... gets ERROR 503"`},
}

// incident is one line of loadgen's --incidents log.
type incident struct {
	T     int64  `json:"t"` // unix ms
	What  string `json:"what"`
	Cause string `json:"cause,omitempty"`
	N     int64  `json:"n,omitempty"`
	Addr  string `json:"addr"`
	ID    string `json:"id"`
}

func (in incident) count() int64 {
	if in.What == "disconnect" || in.What == "handshake" {
		return 1
	}
	return in.N
}

// readIncidents reads loadgen's incident log.
func readIncidents(path string) ([]incident, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []incident
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var in incident
		if err := json.Unmarshal(sc.Bytes(), &in); err != nil {
			return out, fmt.Errorf("%s: %q: %w", path, sc.Text(), err)
		}
		out = append(out, in)
	}
	return out, sc.Err()
}

// tally is the verdict's count.
type tally struct {
	Bad     map[string]int64 `json:"violations"`    // not allowed, by kind
	Allowed map[string]int64 `json:"allowed"`       // allowed by an event's row, by kind
	Ends    map[string]int64 `json:"ends_by_cause"` // every connection end, by cause
	Samples []incident       `json:"unexplained"`   // the first unexplained incidents
	Times   []time.Time      `json:"-"`             // when each unexplained incident happened
}

// maxSamples bounds the unexplained incidents kept for the report.
const maxSamples = 20

// judge sorts every incident into allowed (an event that covers its time
// allows it) or not.
func judge(incs []incident, evs []*event, grace time.Duration) tally {
	t := tally{Bad: map[string]int64{}, Allowed: map[string]int64{}, Ends: map[string]int64{}}
	for _, in := range incs {
		kind, ok := kindOf[in.What]
		if !ok {
			kind = in.What
		}
		if kind == kDisconnect {
			t.Ends[in.Cause]++
		}
		n := in.count()
		if explained(in, kind, evs, grace) {
			t.Allowed[kind] += n
			continue
		}
		t.Bad[kind] += n
		if n > 0 {
			t.Times = append(t.Times, time.UnixMilli(in.T))
			if len(t.Samples) < maxSamples {
				t.Samples = append(t.Samples, in)
			}
		}
	}
	return t
}

// explained reports whether an event running at the incident's time
// allows it.
func explained(in incident, kind string, evs []*event, grace time.Duration) bool {
	at := time.UnixMilli(in.T)
	for _, ev := range evs {
		if at.Before(ev.Start) || (!ev.End.IsZero() && at.After(ev.End.Add(grace))) {
			continue
		}
		row := allowed[ev.Kind]
		if kind == kDisconnect {
			onIt := ev.Addr == "" || ev.Addr == in.Addr
			if onIt && slices.Contains(row.Ends, in.Cause) {
				return true
			}
			continue
		}
		if slices.Contains(row.Kinds, kind) {
			return true
		}
	}
	return false
}

// badTotal is the number of violations not allowed.
func (t tally) badTotal() int64 {
	var n int64
	for _, v := range t.Bad {
		n += max(v, 0)
	}
	return n
}
