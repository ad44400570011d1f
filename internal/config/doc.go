// Package config is the configuration of the switchyard binary: the
// gateway's and the backend shard's settings as one YAML file, SWITCHYARD_*
// environment variables and command-line flags, merged, validated and
// mapped onto server.Config and backend.Config.
//
// Precedence: defaults < file (--config) < environment < flags. Every key
// is reachable all three ways (except lists of structures, file only);
// names are derived from one another:
//
//	file key        rate_burst, cluster.bind
//	environment     SWITCHYARD_RATE_BURST, SWITCHYARD_CLUSTER_BIND
//	flag            --rate-burst, --cluster-bind (a few keep older names: --gossip, --join, --admin)
//
// Durations are Go durations everywhere ("30s", "250ms"); lists on the
// command line and in the environment are comma-separated.
//
// Secrets are never values: the file, the environment and the flags name
// files (admin_token_file, auth_secret_file, cluster_key_file) that are
// read at load and at every reload. Print shows the paths, never the
// contents.
//
// Validation names every problem at once (Problems); the command exits 2.
// docs/configuration.md lists every key, and a test reflects over the
// structs here to keep it true.
//
// The package reads files and the environment only when asked (Load);
// it starts no goroutine.
package config
