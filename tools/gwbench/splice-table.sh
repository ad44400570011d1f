#!/usr/bin/env bash
# splice-table.sh DOC TABLE_MD START COMMAND: replaces what lies between the
# markers "<!-- make bench: begin -->" and "<!-- make bench: end -->" in DOC
# with a heading (date, command, machine) and the table in TABLE_MD, so the
# generated table in docs/benchmarks.md is always the last `make bench` run.
# The markers are kept; a DOC without them is left alone, with a message.
set -euo pipefail
doc=$1 table=$2 start=$3 command=$4
begin='<!-- make bench: begin -->' end='<!-- make bench: end -->'
if ! grep -qF "$begin" "$doc" || ! grep -qF "$end" "$doc"; then
	echo "splice-table.sh: $doc has no '$begin' … '$end' markers; table not spliced" >&2
	exit 0
fi
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
body=$(mktemp)
{
	echo "Run started $start on $(hostname) ($(nproc) cores, ${cpu:-unknown CPU}," \
		"$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r))," \
		"command \`$command\`. Medians of the runs (n), ratio to the first column in brackets."
	echo
	echo "![echo latency percentiles per target](benchmarks/latency.svg)"
	echo
	echo "![user-space memory per idle session per target](benchmarks/memory.svg)"
	echo
	cat "$table"
} > "$body"
out=$(mktemp)
awk -v begin="$begin" -v end="$end" -v body="$body" '
	$0 == begin { print; while ((getline line < body) > 0) print line; skip = 1; next }
	$0 == end { skip = 0 }
	!skip { print }
' "$doc" > "$out"
cat "$out" > "$doc"
rm -f "$body" "$out"
echo "splice-table.sh: table of the run started $start written into $doc" >&2
