package main

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard-gw/switchyard/server/remote"
)

// Unplanned events: a gateway takes a shard out of its ring when every
// link to it failed: read nothing for LinkTimeout (3 s), or closed by the
// shard, which a starved box (load average 20 on 2 cores) causes without
// any event. To the devices
// that is "a silent shard" (docs/guarantees.md): its sessions reopen on
// the next owner from their checkpoints. The run finds
// these in the gateways' logs ("shard down", "shard back") and judges
// them by the shard-silent row, on that gateway, from LinkTimeout before
// the shard went down until the gateway put it back; they are reported,
// never hidden. A shard that an event is stopping at the time is not
// unplanned, nor are the links of a gateway an event is stopping. A single link lost the same way (others to the shard still
// up) is an unplanned link-lost: its sessions' devices get 503 and resume.

// logLine matches the fields the run reads from a gateway's text log.
var logLine = regexp.MustCompile(`^time=(\S+) level=\S+ msg="([^"]*)".* shard=(\S+)(?: .*err=(?:"([^"]*)"|(\S+)))?`)

// silentShards reads the gateways' logs for shards taken out of a ring
// while their process ran, and returns them as unplanned events
// (kind shardSilent, Addr the gateway's device address). evs are the
// planned events: a shard they were stopping is not unplanned.
func silentShards(cl *cluster, evs []*event, end time.Time) []*event {
	var out []*event
	for _, g := range cl.members() {
		if !g.gateway {
			continue
		}
		for i := 1; i <= g.starts; i++ {
			out = append(out, silentIn(filepath.Join(cl.dir, logName(g, i)), g, evs, end)...)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// silentIn reads one gateway log.
func silentIn(path string, g *member, evs []*event, end time.Time) []*event {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	lastErr := map[string]string{} // shard → its last link's error
	open := map[string]*event{}    // shard → its unplanned event, until "shard back"
	var out []*event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := logLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			continue
		}
		shard, linkErr := m[3], m[4]+m[5]
		switch {
		case m[2] == "backend link lost":
			lastErr[shard] = linkErr
			if !stopping(evs, shard, g.name, t) && !strings.Contains(linkErr, "connection refused") {
				out = append(out, &event{Kind: linkLost, Target: shard + " at " + g.name, Addr: g.addr,
					Start: t.Add(-linkTimeout), End: t, Note: "unplanned: " + linkErr})
			}
		case strings.HasPrefix(m[2], "shard down"):
			if open[shard] != nil || stopping(evs, shard, g.name, t) {
				continue
			}
			ev := &event{Kind: shardSilent, Target: shard + " at " + g.name, Addr: g.addr,
				Start: t.Add(-linkTimeout), End: end, Note: "unplanned, last link error: " + lastErr[shard]}
			open[shard] = ev
			out = append(out, ev)
		case strings.HasPrefix(m[2], "shard back"):
			if ev := open[shard]; ev != nil {
				ev.End = t
				delete(open, shard)
			}
		}
	}
	return out
}

// linkTimeout is the gateways' LinkTimeout (the children run with the
// default): a silent shard's trouble starts this long before the timeout
// is logged.
const linkTimeout = remote.DefaultLinkTimeout

// stopping reports whether an event was stopping shard, or the gateway
// gw whose log it is, at t.
func stopping(evs []*event, shard, gw string, t time.Time) bool {
	for _, ev := range evs {
		if t.Before(ev.Start) || (!ev.End.IsZero() && t.After(ev.End)) {
			continue
		}
		switch ev.Kind {
		case drainShard, killShard:
			if ev.Target == shard {
				return true
			}
		case drainGateway, killGateway:
			if ev.Target == gw {
				return true
			}
		}
	}
	return false
}

func logName(m *member, start int) string {
	return m.name + "-" + strconv.Itoa(start) + ".log"
}
