#!/usr/bin/env bash
# fairness.sh measures whether one event loop stays fair to a ping-pong
# client while other connections flood it (GitHub issue 17): tcpkit's
# epoll engine (one loop), its goroutine engine (GOMAXPROCS=1) and gnet v2
# (one loop), each a fresh bench/cmd/fairness/fairserver process pinned to
# CPU 0; the ping-pong client and the flooders (cmd/fairness) on CPU 1,
# the flooders under SCHED_IDLE so that CPU 1 serves the ping-pong first.
# Each server gets: the ping-pong alone, then beside 1 and 4 flooders,
# 5 s each after a 0.5 s warmup; and a control row, the ping-pong and the
# flood served by two processes sharing CPU 0, which shows the share of
# the loss that is the client side's and the kernel's.
#
# Two flood modes, one table each: discard (the server only counts the
# flood's bytes) and echo (the server echoes the flood, with backpressure,
# and the flooders read it back), which makes the server CPU the limit.
# The Markdown tables go to stdout; raw JSON and each server's output to
# results/fairness-<timestamp>/<mode>/.
#
# On a shared machine, other processes' work shows in the results: before
# each server's run the driver waits (up to a minute) for a quiet second,
# and it makes a run again (up to 3 times) when other processes took over
# 10% of CPUs 0-1 during one of its phases; the tables say how much they
# took.
#
#   bash fairness.sh                     3 repetitions, both modes: about 8 minutes on a quiet machine
#   bash fairness.sh --quick             1 repetition of 2 s phases: about 1.5 minutes
#   bash fairness.sh --modes discard --servers tcpkit-epoll,gnet --floods 1 --duration 10s
#   bash fairness.sh --modes echo --hog  a busy loop shares CPU 0 with the server: a contended server
#   bash fairness.sh --worktree          build against the working tree, not a clean export of HEAD
#   bash fairness.sh --rev 1a2b3c4       build against another revision
#
# Other flags go to the driver (bin/fairness -h lists them). Needs: Go,
# git, taskset and chrt (util-linux), and at least 2 CPUs.
set -euo pipefail
cd "$(dirname "$0")"
. ./tree.sh

rev=HEAD
modes=discard,echo
args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--quick | -quick) args+=(-reps 1 -duration 2s) ;;
	--worktree | -worktree) rev=worktree ;;
	--rev | -rev) rev=$2; shift ;;
	--modes | -modes) modes=$2; shift ;;
	*) args+=("$1") ;;
	esac
	shift
done

command -v taskset >/dev/null || { echo "fairness.sh: taskset (util-linux) is needed" >&2; exit 1; }
command -v chrt >/dev/null || { echo "fairness.sh: chrt (util-linux) is needed" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "fairness.sh: needs at least 2 CPUs (server on CPU 0, clients on CPU 1)" >&2; exit 1; }

echo "fairness.sh: building" >&2
buildtree bin "$rev" ./cmd/fairness ./cmd/fairness/fairserver
out="results/fairness-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
IFS=, read -r -a ms <<<"$modes"
for m in "${ms[@]}"; do
	case "$m" in
	discard) flag=-flood-echo=false ;;
	echo) flag=-flood-echo=true ;;
	*) echo "fairness.sh: unknown mode $m (want discard or echo)" >&2; exit 2 ;;
	esac
	echo "fairness.sh: $m floods" >&2
	TCPKIT_REVISION=$tree_desc taskset -c 1 bin/fairness -bin bin -out "$out/$m" -server-cpu 0 "$flag" "${args[@]}"
	echo
done
