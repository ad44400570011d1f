#!/usr/bin/env bash
# tools/scale/tuned.sh CMD...: runs CMD in a network namespace of its own
# whose kernel settings are those deploy/ansible gives a gateway host
# (roles/host_tuning, 99-switchyard.conf): an accept queue and a SYN
# backlog of 65,535. They are per namespace, so the box's own settings
# are left alone, and its loopback carries all of 127.0.0.0/8 as the
# box's does. Needs root (ip netns). The namespace is removed on exit.
#
#   tools/scale/tuned.sh go run ./tools/scale --sessions 100000 --hold 90s --storm-after 30s
set -euo pipefail
if [ "$#" -eq 0 ]; then
	echo "usage: $0 CMD [ARG...]" >&2
	exit 2
fi
ns="switchyard-scale-$$"
ip netns add "$ns"
trap 'ip netns del "$ns"' EXIT
netns() { ip netns exec "$ns" "$@"; }
netns ip link set lo up
netns sysctl -q -w net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535 \
	net.ipv4.tcp_keepalive_time=600 net.ipv4.tcp_keepalive_intvl=30 net.ipv4.tcp_keepalive_probes=4
netns "$@"
