package remote

import (
	"sync"

	"github.com/switchyard-gw/switchyard/protocol"
)

// topics maps a topic to the local devices whose sessions subscribed
// to it (the shard says who subscribes; the gateway fans a Publish out to
// its own devices). Subscriptions are rare and a publish copies the
// subscriber list, so one lock is enough: no frame path touches it.
type topics struct {
	mu   sync.Mutex
	subs map[string]map[Device]struct{}
	of   map[Device][]string // what each subscribed device is in, for its close
}

func newTopics() *topics {
	return &topics{subs: map[string]map[Device]struct{}{}, of: map[Device][]string{}}
}

func (t *topics) subscribe(d Device, topic string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	set := t.subs[topic]
	if set == nil {
		set = map[Device]struct{}{}
		t.subs[topic] = set
	}
	if _, ok := set[d]; !ok {
		set[d] = struct{}{}
		t.of[d] = append(t.of[d], topic)
	}
}

func (t *topics) unsubscribe(d Device, topic string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.removeLocked(d, topic)
	list := t.of[d]
	for i, s := range list {
		if s == topic {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(t.of, d)
	} else {
		t.of[d] = list
	}
}

func (t *topics) removeLocked(d Device, topic string) {
	if set := t.subs[topic]; set != nil {
		delete(set, d)
		if len(set) == 0 {
			delete(t.subs, topic)
		}
	}
}

// drop forgets every subscription of a closed device connection.
func (t *topics) drop(d Device) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, topic := range t.of[d] {
		t.removeLocked(d, topic)
	}
	delete(t.of, d)
}

// publish sends payload as best-effort DATA to every local subscriber.
func (t *topics) publish(topic string, payload []byte) int {
	t.mu.Lock()
	set := t.subs[topic]
	devices := make([]Device, 0, len(set))
	for d := range set {
		devices = append(devices, d)
	}
	t.mu.Unlock()
	for _, d := range devices {
		d.Queue(protocol.TypeData, 0, 0, payload)
		d.Flush()
	}
	return len(devices)
}
