#!/usr/bin/env bash
# syscalls.sh counts the system calls an echo server makes per message: it
# starts each server under `strace -c -f`, runs the 1-connection 64-byte
# ping-pong against it with loadgen for a fixed number of messages, stops
# the server with SIGTERM so that strace writes its summary (not SIGINT: a
# command a script starts in the background ignores SIGINT, and Go keeps it
# ignored), and prints the calls per echoed message as Markdown tables: the
# main calls by server, then every call by server.
#
#   bash syscalls.sh                       tcpkit-epoll, gnet and c; 20,000 messages
#   bash syscalls.sh -servers tcpkit,tcpkit-epoll,std,gnet,c,node -count 50000
#   bash syscalls.sh -unpinned             GOMAXPROCS=2, 2 loops/threads, no taskset
#   bash syscalls.sh -size 4096 -conns 50  another ping-pong shape
#
# Pinned (the default, as in run.sh), the server runs on CPU 0 (taskset,
# under strace, which is free to run anywhere) and loadgen on CPU 1. The
# counts include the server's start and stop (a Go server's runtime makes a
# couple of hundred calls starting: rt_sigaction, mmap, clone...), which is
# why the run is long enough for them to weigh under 0.01 per message. strace
# slows every call: counts that depend on timing (a goroutine server's
# EAGAIN reads, which make ~2 reads per message untraced and ~1.1 traced)
# are not those of an untraced run.
# Raw files (strace summaries, loadgen JSON) go to results/syscalls-<timestamp>/.
# Needs: Go, cc, strace (installed with apt-get if missing), taskset.
set -euo pipefail
cd "$(dirname "$0")"

servers=tcpkit-epoll,gnet,c
count=20000
size=64
conns=1
unpinned=
procs=2
while [ $# -gt 0 ]; do
	case "$1" in
	-servers | --servers) servers=$2; shift ;;
	-count | --count) count=$2; shift ;;
	-size | --size) size=$2; shift ;;
	-conns | --conns) conns=$2; shift ;;
	-procs | --procs) procs=$2; shift ;;
	-unpinned | --unpinned) unpinned=1 ;;
	*) echo "syscalls.sh: unknown argument $1 (see the comment at the top)" >&2; exit 2 ;;
	esac
	shift
done

if ! command -v strace >/dev/null; then
	echo "syscalls.sh: installing strace" >&2
	sudo=()
	[ "$(id -u)" = 0 ] || sudo=(sudo)
	"${sudo[@]}" apt-get install -y -qq strace >/dev/null ||
		{ echo "syscalls.sh: strace is needed (apt-get install strace)" >&2; exit 1; }
fi
command -v cc >/dev/null || { echo "syscalls.sh: a C compiler (cc) is needed for peers/cecho" >&2; exit 1; }
[ -n "$unpinned" ] || command -v taskset >/dev/null || { echo "syscalls.sh: taskset (util-linux) is needed" >&2; exit 1; }

mkdir -p bin
echo "syscalls.sh: building" >&2
go build -o bin/ ./peers/stdecho ./peers/gnetecho ./peers/tcpkitecho ./cmd/loadgen
cc -O2 -Wall -Wextra -pthread -o bin/cecho peers/cecho/cecho.c
out="results/syscalls-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"

# argv NAME ADDR prints the command line of server NAME, one word a line.
argv() {
	local extra=()
	case "$1" in
	tcpkit) printf '%s\n' bin/tcpkitecho -addr "$2" ;;
	tcpkit-epoll) printf '%s\n' bin/tcpkitecho -addr "$2" -engine epoll ;;
	std) printf '%s\n' bin/stdecho -addr "$2" ;;
	gnet)
		[ -z "$unpinned" ] || extra=(-loops "$procs")
		printf '%s\n' bin/gnetecho -addr "$2" -multicore "${extra[@]}"
		;;
	c)
		[ -z "$unpinned" ] || extra=(-t "$procs")
		printf '%s\n' bin/cecho -addr "$2" "${extra[@]}"
		;;
	node) printf '%s\n' node peers/nodeecho.js "$2" ;;
	*) echo "syscalls.sh: unknown server $1 (want tcpkit, tcpkit-epoll, std, gnet, c or node)" >&2; return 1 ;;
	esac
}

# freeport prints a loopback port nothing listens on.
freeport() {
	local p
	while :; do
		p=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}

pin() { # pin CPU: the taskset prefix, or nothing when unpinned
	[ -n "$unpinned" ] || printf '%s\n' taskset -c "$1"
}

# On any exit, stop the server still running, if any: strace then ends too.
srv=
spid=
cleanup() {
	if [ -n "$srv" ]; then kill -TERM "$srv" 2>/dev/null || true; fi
	if [ -n "$spid" ]; then wait "$spid" 2>/dev/null || true; fi
}
trap cleanup EXIT

IFS=, read -r -a names <<<"$servers"
for name in "${names[@]}"; do
	addr="127.0.0.1:$(freeport)"
	mapfile -t cmd < <(argv "$name" "$addr")
	mapfile -t srvpin < <(pin 0)
	mapfile -t loadpin < <(pin 1)
	envs=()
	[ -z "$unpinned" ] || envs=(env "GOMAXPROCS=$procs")
	echo "syscalls.sh: $name on $addr: $count messages of $size bytes on $conns connection(s) under strace" >&2
	"${envs[@]}" strace -c -f -o "$out/$name.strace" "${srvpin[@]}" "${cmd[@]}" >"$out/$name.stdout" 2>"$out/$name.stderr" &
	spid=$!
	for _ in $(seq 200); do # up to 10s
		grep -q '^listening' "$out/$name.stdout" 2>/dev/null && break
		kill -0 "$spid" 2>/dev/null || break
		sleep 0.05
	done
	if ! grep -q '^listening' "$out/$name.stdout"; then
		echo "syscalls.sh: $name did not start:" >&2
		cat "$out/$name.stderr" >&2
		kill "$spid" 2>/dev/null || true # strace kills the server it started
		exit 1
	fi
	# The server is strace's child (taskset execs it, keeping its pid).
	srv=$(cat "/proc/$spid/task/$spid/children")
	srv=${srv%% *}
	status=0
	"${loadpin[@]}" bin/loadgen -addr "$addr" -mode ping-pong -conns "$conns" -size "$size" -count "$count" \
		-duration 60s -quiet -json "$out/$name.json" >"$out/$name.loadgen.txt" 2>&1 || status=$?
	kill -TERM "$srv"
	wait "$spid" || true
	srv= spid=
	if [ "$status" != 0 ]; then
		echo "syscalls.sh: loadgen against $name failed ($status):" >&2
		cat "$out/$name.loadgen.txt" >&2
		exit 1
	fi
done

# counts FILE prints "syscall calls errors" for every line of a strace -c
# summary ("% time seconds usecs/call calls [errors] syscall").
counts() {
	awk '$NF != "syscall" && $NF != "total" && $4 ~ /^[0-9]+$/ { print $NF, $4, (NF == 6 ? $5 : 0) }' "$1"
}

# messages FILE prints the messages a loadgen JSON result counted.
messages() { sed -n 's/^  "messages": \([0-9]*\),$/\1/p' "$1"; }

# errs FILE prints the errors a loadgen JSON result counted, of every kind.
errs() {
	awk '/^  "errors": \{/ { in_errors = 1 }
		in_errors { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) n += $i }
		in_errors && /\}/ { in_errors = 0 }
		END { print n + 0 }' "$1"
}

mode="pinned: server on CPU 0 under strace, loadgen on CPU 1; GOMAXPROCS=1, one loop or thread"
[ -z "$unpinned" ] || mode="unpinned: GOMAXPROCS=$procs, $procs loops (gnet), $procs threads (c)"
echo "## System calls per message ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "- ping-pong, $conns connection(s) × $size B, $count messages per server, counted by \`strace -c -f\` over the"
echo "  server's whole life (start and stop included); $mode"
echo "- tcpkit at $(git -C .. log -1 --format='%h (%cs) %s')"
echo "- raw files: $out"
echo "- strace stops the server at every call, tens of µs each: what depends on timing (the EAGAIN reads of"
echo "  tcpkit and std, gnet's zero-timeout polls, the Go runtime's nanosleep and futex) differs from an"
echo "  untraced run; the read, write and epoll_wait of an event loop per message do not"
echo
echo "### Main calls"
echo
echo "read(2) errors are EAGAIN (a read that found nothing): shown as \"of which failed\"."
echo
echo "| server | messages | loadgen errors | all calls | read | of which failed | write | writev | epoll_wait + epoll_pwait | epoll_ctl | futex | nanosleep | other |"
echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
for name in "${names[@]}"; do
	msgs=$(messages "$out/$name.json")
	e=$(errs "$out/$name.json")
	counts "$out/$name.strace" | awk -v name="$name" -v msgs="$msgs" -v e="$e" '
		function f(x) { return sprintf("%.3f", x / msgs) }
		{
			all += $2
			if ($1 == "read") { read += $2; rerr += $3 }
			else if ($1 == "write") write += $2
			else if ($1 == "writev") writev += $2
			else if ($1 ~ /^epoll_p?wait2?$/) wait += $2
			else if ($1 == "epoll_ctl") ctl += $2
			else if ($1 == "futex") futex += $2
			else if ($1 == "nanosleep") sleep += $2
			else other += $2
		}
		END {
			printf "| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name, msgs, e,
				f(all), f(read), f(rerr), f(write), f(writev), f(wait), f(ctl), f(futex), f(sleep), f(other)
		}'
done

echo
echo "### Every call, per message"
echo
echo "Calls made at least once per 1,000 messages by some server; the rest were made only at start and stop."
echo
printf '| call |'
printf ' %s |' "${names[@]}"
echo
printf '|---|'
for _ in "${names[@]}"; do printf -- '--:|'; done
echo
for name in "${names[@]}"; do
	msgs=$(messages "$out/$name.json")
	counts "$out/$name.strace" | awk -v name="$name" -v msgs="$msgs" '{ print $1, name, $2 / msgs }'
done | awk -v order="${servers}" '
	BEGIN { n = split(order, names, ",") }
	{ v[$1, $2] = $3; if ($3 >= 0.001) keep[$1] = 1; if (!($1 in seen)) { seen[$1] = 1; calls[++c] = $1 } }
	END {
		for (i = 1; i <= c; i++) {
			k = calls[i]
			if (!(k in keep)) continue
			line = "| " k " |"
			for (j = 1; j <= n; j++) {
				x = ((k, names[j]) in v) ? sprintf("%.3f", v[k, names[j]]) : "–"
				line = line " " x " |"
			}
			print line
		}
	}' | sort
