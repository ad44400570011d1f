package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/hashicorp/memberlist"
)

// newKeyring builds memberlist's keyring from copies of keys (memberlist
// keeps the slices it is given).
func newKeyring(keys [][]byte) (*memberlist.Keyring, error) {
	keys = cloneKeys(keys)
	kr, err := memberlist.NewKeyring(keys[1:], keys[0])
	if err != nil {
		return nil, fmt.Errorf("cluster: keyring: %w", err)
	}
	return kr, nil
}

func cloneKeys(keys [][]byte) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = bytes.Clone(k)
	}
	return out
}

// SetKeys replaces the gossip keyring while the node runs (a config
// reload): keys[0] becomes the key that encrypts, every key decrypts, and
// installed keys not listed are removed. Rotate in three rounds over all
// members — add the new key as keys[1], then make it keys[0], then drop
// the old one — waiting for each round to finish everywhere, because a
// member cannot read what is encrypted with a key it does not hold yet.
// Encryption cannot be switched on or off at run time: a node started
// without Keys refuses. Before Start, SetKeys replaces Config.Keys.
func (n *Node) SetKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return errors.New("cluster: set keys: at least one key")
	}
	for i, k := range keys {
		if err := memberlist.ValidateKey(k); err != nil {
			return fmt.Errorf("cluster: set keys: key %d: %w", i, err)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.state == stateNew:
		n.cfg.Keys = cloneKeys(keys)
		return nil
	case n.state == stateClosed:
		return ErrClosed
	case n.keyring == nil:
		return errors.New("cluster: set keys: started without encryption; restart to enable it")
	}
	for _, k := range cloneKeys(keys) {
		if err := n.keyring.AddKey(k); err != nil {
			return fmt.Errorf("cluster: set keys: %w", err)
		}
	}
	if err := n.keyring.UseKey(keys[0]); err != nil {
		return fmt.Errorf("cluster: set keys: %w", err)
	}
	for _, old := range n.keyring.GetKeys() {
		if !slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, old) }) {
			if err := n.keyring.RemoveKey(old); err != nil {
				return fmt.Errorf("cluster: set keys: %w", err)
			}
		}
	}
	return nil
}
