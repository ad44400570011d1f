package server

import (
	"sync"

	"github.com/switchyard-gw/switchyard/protocol"
)

// topics maps a topic to the local connections whose sessions subscribed
// to it (the shard says who subscribes; the gateway fans a Publish out to
// its own devices). Subscriptions are rare and a publish copies the
// subscriber list, so one lock is enough: no frame path touches it.
type topics struct {
	mu   sync.Mutex
	subs map[string]map[*conn]struct{}
	of   map[*conn][]string // what each subscribed connection is in, for its close
}

func newTopics() *topics {
	return &topics{subs: map[string]map[*conn]struct{}{}, of: map[*conn][]string{}}
}

func (t *topics) subscribe(c *conn, topic string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	set := t.subs[topic]
	if set == nil {
		set = map[*conn]struct{}{}
		t.subs[topic] = set
	}
	if _, ok := set[c]; !ok {
		set[c] = struct{}{}
		t.of[c] = append(t.of[c], topic)
	}
}

func (t *topics) unsubscribe(c *conn, topic string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.removeLocked(c, topic)
	list := t.of[c]
	for i, s := range list {
		if s == topic {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(t.of, c)
	} else {
		t.of[c] = list
	}
}

func (t *topics) removeLocked(c *conn, topic string) {
	if set := t.subs[topic]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(t.subs, topic)
		}
	}
}

// drop forgets every subscription of a closed connection.
func (t *topics) drop(c *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, topic := range t.of[c] {
		t.removeLocked(c, topic)
	}
	delete(t.of, c)
}

// publish sends payload as best-effort DATA to every local subscriber.
func (t *topics) publish(topic string, payload []byte) int {
	t.mu.Lock()
	set := t.subs[topic]
	conns := make([]*conn, 0, len(set))
	for c := range set {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.send(protocol.TypeData, 0, 0, payload)
	}
	return len(conns)
}
