#!/usr/bin/env bash
# run.sh builds the echo servers, the load generator and the yardstick
# client, then runs the benchmark matrix: tcpkit's echo server against Go's
# net (stdecho), gnet and Node, the server pinned to CPU 0 and the load to
# CPU 1. It prints Markdown tables to stdout and keeps every raw JSON result
# under results/<timestamp>/.
#
#   ./run.sh            the full matrix (5 runs per cell; about 7 minutes)
#   ./run.sh --quick    one short run per cell (under 2 minutes)
#
# Other flags go to the matrix driver (cmd/matrix), e.g. --servers tcpkit,std.
# Needs: Go, Node, taskset (util-linux), and at least 2 CPUs.
set -euo pipefail
cd "$(dirname "$0")"

command -v taskset >/dev/null || { echo "run.sh: taskset (util-linux) is needed" >&2; exit 1; }
command -v node >/dev/null || { echo "run.sh: node is needed for the Node peer" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "run.sh: needs at least 2 CPUs (server on CPU 0, load on CPU 1)" >&2; exit 1; }

# The idle cell holds 5,000 connections: each side needs a descriptor per
# connection. Raise the soft limit to the hard one (Go does so by itself;
# Node does not).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 6000 ]; then
	echo "run.sh: warning: ulimit -n is $(ulimit -n); the idle cell needs over 5,000" >&2
fi

mkdir -p bin
echo "run.sh: building" >&2
go build -o bin/ ./peers/stdecho ./peers/gnetecho ./peers/tcpkitecho ./clientloop ./cmd/loadgen ./cmd/matrix

out="results/$(date -u +%Y%m%dT%H%M%SZ)"
quick=()
args=()
for a in "$@"; do
	case "$a" in
	--quick | -quick) quick=(-quick) ;;
	*) args+=("$a") ;;
	esac
done
echo "run.sh: running the matrix; raw results in $out" >&2
./bin/matrix -bin bin -peers peers -out "$out" "${quick[@]}" "${args[@]}"
