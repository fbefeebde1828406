#!/usr/bin/env bash
# run.sh builds the echo servers, the load generator and the yardstick
# client, then runs the benchmark matrix: tcpkit's echo server, on its
# goroutine engine (tcpkit) and its epoll engine (tcpkit-epoll), against
# Go's net (stdecho), gnet, a C epoll loop (cecho) and Node, the server
# pinned to CPU 0 and the load to CPU 1. It prints Markdown tables to
# stdout and keeps every raw JSON result under results/<timestamp>/.
#
#   ./run.sh                the full matrix (5 runs per cell; about 10 minutes)
#   ./run.sh --quick        one short run per cell (under 2 minutes)
#   ./run.sh --unpinned     the same, servers and load free on every CPU, the
#                           servers with 2 loops/threads (GOMAXPROCS=2)
#   ./run.sh --scale 19000  only the scale cell: 19,000 connections held on
#                           tcpkit-epoll, gnet and c, memory per connection
#
# Other flags go to the matrix driver (cmd/matrix), e.g. --servers tcpkit,std.
# Needs: Go, a C compiler (cc), Node, taskset (util-linux), and at least 2 CPUs.
set -euo pipefail
cd "$(dirname "$0")"

command -v taskset >/dev/null || { echo "run.sh: taskset (util-linux) is needed" >&2; exit 1; }
command -v node >/dev/null || { echo "run.sh: node is needed for the Node peer" >&2; exit 1; }
command -v cc >/dev/null || { echo "run.sh: a C compiler (cc) is needed for the C peer, peers/cecho (apt-get install gcc)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "run.sh: needs at least 2 CPUs (server on CPU 0, load on CPU 1)" >&2; exit 1; }

out="results/$(date -u +%Y%m%dT%H%M%SZ)"
quick=()
args=()
conns=10000 # connections of the idle cell, or of the scale cell
prev=
for a in "$@"; do
	case "$a" in
	--quick | -quick) quick=(-quick) ;;
	*) args+=("$a") ;;
	esac
	case "$prev" in
	--scale | -scale | --idle-conns | -idle-conns) conns=$a ;;
	esac
	case "$a" in
	--scale=* | -scale=* | --idle-conns=* | -idle-conns=*) conns=${a#*=} ;;
	esac
	prev=$a
done

# The idle cell holds 10,000 connections, the scale cell as many as it is
# told: the server and the load, separate processes, each need a descriptor
# per connection. Raise the soft limit to the hard one (Go does so by
# itself; Node does not).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((conns + 100)) ]; then
	echo "run.sh: warning: ulimit -n is $(ulimit -n); holding $conns connections needs over $((conns + 100))" >&2
fi

mkdir -p bin
echo "run.sh: building" >&2
go build -o bin/ ./peers/stdecho ./peers/gnetecho ./peers/tcpkitecho ./clientloop ./cmd/loadgen ./cmd/matrix
cc -O2 -Wall -Wextra -pthread -o bin/cecho peers/cecho/cecho.c
echo "run.sh: running the matrix; raw results in $out" >&2
./bin/matrix -bin bin -peers peers -out "$out" "${quick[@]}" "${args[@]}"
