package cluster

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
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

// gossipKeyLabel separates the gossip key derivation from any other use of
// the same secret. Changing it splits every cluster in two: never.
const gossipKeyLabel = "switchyard-gossip\x00"

// MinSecret is the shortest cluster secret (one line of the key file)
// accepted: links and resume tokens are signed with the secrets as they
// are.
const MinSecret = 16

// DeriveKeys derives the keys of a cluster from its secrets, the lines of
// its key file (the first signs and encrypts, every one verifies and
// decrypts, so a secret can be rotated line by line):
//
//   - gossip: memberlist wants AES keys of exactly 32 bytes, so each
//     secret is hashed: SHA-256("switchyard-gossip\x00" || secret). These
//     go to Config.Keys of every node.
//   - links: the secrets themselves, which authenticate the gateway–shard
//     links (backend.Config.ClusterKeys, server.Config.LinkKeys) and sign
//     resume tokens.
//
// Every gateway and shard of a cluster must derive its keys this way:
// a node given the raw secrets as gossip keys cannot read anyone's gossip
// and never joins. The derivation is fixed (keys_test.go checks it
// against recorded vectors), so nodes of different versions agree.
func DeriveKeys(secrets [][]byte) (gossip, links [][]byte) {
	for _, s := range secrets {
		h := sha256.Sum256(append([]byte(gossipKeyLabel), s...))
		gossip = append(gossip, h[:])
	}
	return gossip, secrets
}

// ReadKeyFile reads a cluster key file: one secret per line, blank lines
// skipped, line endings (LF or CRLF) not part of a secret. It fails when
// the file holds no secret or a secret is shorter than MinSecret, naming
// the line.
func ReadKeyFile(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster: key file: %w", err)
	}
	var out [][]byte
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		s := bytes.TrimRight(sc.Bytes(), "\r")
		switch {
		case len(s) == 0:
		case len(s) < MinSecret:
			errs = append(errs, fmt.Errorf("line %d: %d bytes, want at least %d", line, len(s), MinSecret))
		default:
			out = append(out, bytes.Clone(s))
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 && len(out) == 0 {
		errs = append(errs, errors.New("holds no secret"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cluster: key file %s: %w", path, err)
	}
	return out, nil
}
