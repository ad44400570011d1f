package main

// seqCheck checks that a stream of numbers arrives as first, first+1, …
// and counts what does not: a number skipped is lost (until it turns up
// late, when it becomes reordered instead), a number seen again or one
// older than the stream without being missing is duplicated.
type seqCheck struct {
	next    uint64              // the number expected next
	sync    bool                // the next number observed sets next (after a reset)
	missing map[uint64]struct{} // skipped numbers not seen yet (bounded)
	Lost    int64
	Dup     int64
	Reorder int64
}

// maxMissing bounds the skipped numbers remembered per stream.
const maxMissing = 1 << 16

func newSeqCheck(first uint64) seqCheck { return seqCheck{next: first} }

// resync makes the next observed number the new start (a session that
// could not be resumed restarts its numbering).
func (c *seqCheck) resync() {
	c.sync = true
	c.missing = nil
}

func (c *seqCheck) observe(v uint64) {
	if c.sync {
		c.sync = false
		c.next = v + 1
		return
	}
	switch {
	case v == c.next:
		c.next++
	case v > c.next:
		if c.missing == nil {
			c.missing = make(map[uint64]struct{})
		}
		for x := c.next; x < v && len(c.missing) < maxMissing; x++ {
			c.missing[x] = struct{}{}
		}
		c.Lost += int64(v - c.next)
		c.next = v + 1
	default:
		if _, ok := c.missing[v]; ok {
			delete(c.missing, v)
			c.Lost--
			c.Reorder++
		} else {
			c.Dup++
		}
	}
}

// tail counts as lost every number up to last that never arrived after
// the highest one seen (the end of the run), and returns their number.
func (c *seqCheck) tail(last uint64) int64 {
	if c.sync || last < c.next {
		return 0
	}
	n := int64(last - c.next + 1)
	c.Lost += n
	c.next = last + 1
	return n
}
