package remote

import (
	"testing"

	"github.com/switchyard-gw/switchyard/protocol"
)

// keepCounts reads what keeps reported to m.
type keepCounts struct{ m *Metrics }

func (c keepCounts) bytes() int     { return int(c.m.keptBytes.Load()) }
func (c keepCounts) upDrops() int   { return int(c.m.keptDrops[0].Get()) }
func (c keepCounts) downDrops() int { return int(c.m.keptDrops[1].Get()) }

func seqs(t *testing.T, b []byte) []uint32 {
	t.Helper()
	var out []uint32
	for len(b) > 0 {
		f, n, err := protocol.Decode(b, len(b))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f.Seq)
		b = b[n:]
	}
	return out
}

func ckptExt(t *testing.T, state string, lastUp, downSeq uint32) []byte {
	t.Helper()
	p, err := protocol.Marshal(&protocol.SessionState{LinkExt: protocol.LinkExt{State: []byte(state), LastUp: lastUp, DownSeq: downSeq}, Topics: []string{"room"}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The keep follows the session: upstream after the checkpoint, downstream
// until ACKed; recoverOpen makes the migrated Open from them.
func TestKeepRecoverOpen(t *testing.T) {
	m := NewMetrics(nil)
	st := keepCounts{m}
	k := &keep{}
	if _, _, err := k.recoverOpen("dev", "gw", 0, m); err != errNoCheckpoint {
		t.Fatalf("recover without checkpoint: %v", err)
	}
	k.checkpoint(1, ckptExt(t, "c1", 1, 0), m)
	for seq := uint32(2); seq <= 5; seq++ {
		k.upSent(seq, protocol.FlagAckRequested, []byte("u"), 1<<10, m)
	}
	k.downSent(1, protocol.FlagAckRequested, []byte("d1"), 1<<10, m)
	k.downSent(2, protocol.FlagAckRequested, []byte("d2"), 1<<10, m)
	k.downAcked(1, m)
	k.checkpoint(3, ckptExt(t, "c3", 3, 1), m)
	k.checkpoint(2, ckptExt(t, "old", 2, 1), m) // older: ignored
	if got := seqs(t, k.up); len(got) != 2 || got[0] != 4 || got[1] != 5 {
		t.Fatalf("up after checkpoint 3: %v", got)
	}
	ext, held, err := k.recoverOpen("dev", "gw", 4, m) // the device was ACKed through 4
	if err != nil {
		t.Fatal(err)
	}
	if got := seqs(t, held); len(got) != 2 || got[0] != 4 || got[1] != 5 {
		t.Fatalf("held %v", got)
	}
	var x protocol.SessionState
	if err := protocol.Unmarshal(ext, &x); err != nil {
		t.Fatal(err)
	}
	if string(x.State) != "c3" || x.LastUp != 3 || x.Replay != 4 || x.DownSeq != 2 || x.Reason != "migrated" ||
		x.Device != "dev" || len(x.Outbox) != 1 || x.Outbox[0].Seq != 2 || string(x.Outbox[0].Payload) != "d2" ||
		len(x.Topics) != 1 {
		t.Fatalf("open ext %+v", x)
	}
	if st.bytes() != k.size() {
		t.Fatalf("gauge %d, keep holds %d", st.bytes(), k.size())
	}
	k.reset(m)
	if st.bytes() != 0 || k.ckpt != nil {
		t.Fatalf("after reset: gauge %d, %+v", st.bytes(), k)
	}
}

// Beyond the limit the oldest frames go; an upstream gap makes the session
// unrecoverable until a checkpoint covers it.
func TestKeepOverflow(t *testing.T) {
	m := NewMetrics(nil)
	st := keepCounts{m}
	k := &keep{}
	k.checkpoint(0, ckptExt(t, "c0", 0, 0), m)
	limit := 3 * protocol.FrameSize(10)
	for seq := uint32(1); seq <= 5; seq++ {
		k.upSent(seq, protocol.FlagAckRequested, make([]byte, 10), limit, m)
	}
	if got := seqs(t, k.up); len(got) != 3 || got[0] != 3 || st.upDrops() != 2 {
		t.Fatalf("up %v, drops %d", got, st.upDrops())
	}
	if _, _, err := k.recoverOpen("dev", "gw", 0, m); err != errKeepGap {
		t.Fatalf("recover with a gap: %v", err)
	}
	k.checkpoint(2, ckptExt(t, "c2", 2, 0), m)
	if _, _, err := k.recoverOpen("dev", "gw", 0, m); err != nil {
		t.Fatalf("recover once a checkpoint covers the gap: %v", err)
	}
	k.downSent(1, protocol.FlagAckRequested, make([]byte, 10), limit, m)
	if st.downDrops() != 0 {
		t.Fatal("down dropped under the limit")
	}
	b := &Binding{}
	b.keep.Store(k)
	if b.keepOn(false, m); st.bytes() != 0 || k.ckpt != nil || k.down != nil || b.keep.Load() != nil {
		t.Fatalf("a shard that stopped checkpointing: gauge %d, %+v", st.bytes(), k)
	}
}
