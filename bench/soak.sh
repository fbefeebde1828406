#!/usr/bin/env bash
# soak.sh runs the soak test (GitHub issue 17): minutes of mixed
# adversaries against tcpkit servers, one process per engine (goroutine and
# epoll, bench/cmd/soak/soakserver, pinned to CPU 0), each a TLS echo with
# the PROXY protocol optional. The clients (bench/cmd/soak, on CPU 1, at
# nice 10) are, against every server at once: silent TLS clients,
# partial PROXY headers, flooders, resetters, urgent-data (MSG_OOB)
# senders, slow readers, half-closers and a stream of short connections;
# a ping-pong probe per server, in a process of its own, measures latency.
# Every echoed byte is checked. The servers' descriptors, goroutines and
# heap are read before, during and after. Not part of any test run.
#
# It prints Markdown tables (targets met or missed, clients by class,
# probes, the server processes, and the first findings of each class) and
# keeps them, the raw figures and every process's output under
# results/soak-<timestamp>/. It exits 1 if a target was missed.
#
#   bash soak.sh                          3 minutes, both engines
#   bash soak.sh --duration 90s
#   bash soak.sh --engines epoll --flooders 0 --urgent 4      one engine, one adversary mix
#   bash soak.sh --worktree               build against the working tree, not a clean export of HEAD
#   bash soak.sh --rev 1a2b3c4            build against another revision
#
# Other flags go to the driver (bin/soak -h lists them: client counts per
# class, timeouts, the stall bound, the seed). Needs: Go, git, taskset
# (util-linux), and at least 2 CPUs.
set -euo pipefail
cd "$(dirname "$0")"
. ./tree.sh

rev=HEAD
args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--worktree | -worktree) rev=worktree ;;
	--rev | -rev) rev=$2; shift ;;
	*) args+=("$1") ;;
	esac
	shift
done

command -v taskset >/dev/null || { echo "soak.sh: taskset (util-linux) is needed" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "soak.sh: needs at least 2 CPUs (servers on CPU 0, clients on CPU 1)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "soak.sh: building" >&2
buildtree bin "$rev" ./cmd/soak ./cmd/soak/soakserver
out="results/soak-$(date -u +%Y%m%dT%H%M%SZ)"
TCPKIT_REVISION=$tree_desc taskset -c 1 bin/soak -bin bin -out "$out" -server-cpu 0 "${args[@]}"
# A missed target is bold in the Targets table.
if grep -q '\*\*missed\*\*' "$out/summary.md"; then
	echo "soak.sh: targets missed; see $out/summary.md" >&2
	exit 1
fi
