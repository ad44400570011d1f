// Package ansible holds the tests of the deploy/ansible playbooks and
// roles (it has no code of its own). TestCluster runs them for real, over
// SSH, against throwaway hosts this machine builds from network
// namespaces, overlays of its root filesystem and sshd (hosts_test.go):
// site.yml twice (the second run must change nothing), then
// rolling-upgrade.yml under loadgen --verify. TestLint runs ansible-lint's
// production profile. `make test-ansible` installs what they need and
// runs them as root.
package ansible
