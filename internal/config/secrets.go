package config

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
)

// KeyDeriver derives the keys of a cluster from the lines of its key file:
// the gossip keyring and the link keys (the command's, which the backend
// SDK shares).
type KeyDeriver func(secrets [][]byte) (gossip, links [][]byte)

// ReadSecrets reads one secret per line; blank lines are skipped and line
// endings are not part of a secret. A file that holds none is an error.
func ReadSecrets(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read secrets: %w", err)
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if line := bytes.TrimRight(sc.Bytes(), "\r"); len(line) > 0 {
			out = append(out, append([]byte(nil), line...))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("read secrets: %s holds no secret", path)
	}
	return out, nil
}

// readToken reads a one-line token file (the admin token).
func readToken(path string) (string, error) {
	s, err := ReadSecrets(path)
	if err != nil {
		return "", err
	}
	if len(s) != 1 {
		return "", fmt.Errorf("read secrets: %s: want one line, found %d", path, len(s))
	}
	return string(s[0]), nil
}
