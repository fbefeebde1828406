#!/usr/bin/env bash
# forward.sh measures TCP proxies (GitHub issue 13): `tcpkit forward` on its
# epoll engine (forward) and on its goroutine engine (forward-goroutine),
# socat (`socat TCP-LISTEN:P,reuseaddr,fork,backlog=1024 TCP:127.0.0.1:E`, a
# child process per connection; the backlog because its default, 5, drops
# connections when 50 come at once) and HAProxy in TCP mode (a generated minimal config: one
# frontend, one backend server, nbthread 1, no health check), each in front
# of the same `tcpkit echo --greeting ''` server. The proxy runs pinned to
# CPU 0, a fresh process per run; the echo server and the load
# (`tcpkit bench`) share CPU 1. Both are built from a clean export of the
# repository's HEAD (git archive), not from the working tree. Three cells:
#
#   ping-pong  50 connections × 64 B, one message in flight on each, 5 s
#              measured after a 1 s warmup: messages per proxy CPU-second
#   ping-pong  50 connections × 4 KiB, likewise
#   stream     one connection writing 64 KiB messages flat out while it
#              reads the echo, until 1 GiB has come back after a 1 s warmup
#              (bench --mode stream -n 16384): MB/s echoed (each byte
#              crosses the proxy twice, there and back) and MB per proxy
#              CPU-second
#
# The proxy's CPU time over the measured window: for tcpkit forward and
# HAProxy, one process each, `tcpkit bench --pid` reads it from /proc. socat
# forks a child per connection and the children do all the work, so this
# script samples, every 50 ms from CPU 1, utime + stime of the socat parent
# and of each of its children (/proc/PID/task/*/children, then each child's
# /proc/CHILD/stat), and interpolates that series linearly at the window's
# start and end (the "start" and "elapsed_ns" of bench's JSON). The
# children live from before the warmup to after the window, so none is lost
# from the sum while it matters. The same sampler runs for every proxy, and
# its figure for the single-process ones is kept beside bench's own as a
# check (runs.tsv, column 9). After each run the script also waits (up to
# 5 s) for socat's children to exit, so that the parent's cutime + cstime
# account for them in the "others" figure below.
#
# Each cell runs 3 times per proxy, the proxies interleaved (their order
# rotates between repetitions); the table gives medians, and the ratios of
# tcpkit forward to HAProxy and to socat are medians of ratios paired within
# a repetition. The Markdown table goes to stdout (and summary.md), every
# raw result to results/forward-<timestamp>/.
#
# Pinning keeps the proxy, the echo server and the load apart, not other
# people's work away: each run also measures the share of CPUs 0-1 that
# other processes took meanwhile (busy time in /proc/stat, less the
# proxy's, the echo server's and this script's children's), runs again (up
# to 3 times, 10 s apart) when it is over 10% (-max-others), and the table
# shows it.
#
#   bash forward.sh                         four proxies, 3 repetitions: about 5 minutes on a quiet machine
#   bash forward.sh -reps 1 -duration 2s -stream-mib 256    a quick look
#   bash forward.sh -proxies forward,haproxy -max-others 5
#
# Needs: Go, git, haproxy, socat, taskset (util-linux), and at least 2 CPUs.
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh

proxies=forward,forward-goroutine,haproxy,socat
reps=3
duration=5s
warmup=1s
conns=50
streamsize=65536
streammib=1024
maxothers=10 # percent of CPUs 0-1 other processes may take during a run
while [ $# -gt 0 ]; do
	case "$1" in
	-proxies | --proxies) proxies=$2; shift ;;
	-reps | --reps) reps=$2; shift ;;
	-duration | --duration) duration=$2; shift ;;
	-stream-mib | --stream-mib) streammib=$2; shift ;;
	-max-others | --max-others) maxothers=$2; shift ;;
	*) echo "forward.sh: unknown argument $1 (see the comment at the top)" >&2; exit 2 ;;
	esac
	shift
done

for c in taskset haproxy socat git go; do
	command -v "$c" >/dev/null || { echo "forward.sh: $c is needed" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "forward.sh: needs at least 2 CPUs (proxy on CPU 0, echo and load on CPU 1)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

tmp=$(mktemp -d)
srv=  # the proxy
echo= # the echo server
lpid=
spid= # the CPU sampler
cleanup() {
	local p
	for p in "$lpid" "$spid"; do
		if [ -n "$p" ]; then
			kill -TERM "$p" 2>/dev/null || true # timeout passes it on to tcpkit bench
			wait "$p" 2>/dev/null || true
		fi
	done
	for p in "$srv" "$echo"; do
		if [ -n "$p" ]; then
			# socat's children first (by parent), then the parent.
			pkids "$p" | xargs -r kill -KILL 2>/dev/null || true
			kill -TERM "$p" 2>/dev/null || true
			for _ in $(seq 50); do
				kill -0 "$p" 2>/dev/null || break
				sleep 0.05
			done
			kill -KILL "$p" 2>/dev/null || true
			wait "$p" 2>/dev/null || true
		fi
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# pkids PID prints the pids of process PID's children, one a line.
pkids() { cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | sed '/^$/d'; }

echo "forward.sh: building tcpkit from a clean export of HEAD" >&2
at=$(git -C .. log -1 --format='%h (%cs)')
mkdir -p "$tmp/src"
git -C .. archive HEAD | tar -x -C "$tmp/src"
(cd "$tmp/src" && go build -o "$tmp/tcpkit" ./cmd/tcpkit)
tk=$tmp/tcpkit

out="results/forward-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
echo "forward.sh: raw results in $out" >&2

# listens PORT succeeds if something accepts connections on 127.0.0.1:PORT.
listens() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The echo server, on CPU 1 for the whole script.
eport=$(freeport)
taskset -c 1 "$tk" echo --greeting '' --quiet "127.0.0.1:$eport" >"$out/echo.stdout" 2>"$out/echo.stderr" &
echo=$!
for _ in $(seq 200); do listens "$eport" && break; sleep 0.05; done
listens "$eport" || { echo "forward.sh: the echo server did not start:" >&2; cat "$out/echo.stderr" >&2; exit 1; }

# argv NAME PORT prints the command line of proxy NAME listening on PORT,
# one word a line; for haproxy it writes the config first.
argv() {
	case "$1" in
	forward) printf '%s\n' "$tk" forward --quiet --engine epoll "127.0.0.1:$2" "127.0.0.1:$eport" ;;
	forward-goroutine) printf '%s\n' "$tk" forward --quiet --engine goroutine "127.0.0.1:$2" "127.0.0.1:$eport" ;;
	# backlog: socat's default listen backlog, 5, overflows when 50
	# connections come at once; the connections it drops wait for the
	# kernel's SYN-ACK retries, some past bench's 5 s timeout.
	socat) printf '%s\n' socat "TCP-LISTEN:$2,bind=127.0.0.1,reuseaddr,fork,backlog=1024" "TCP:127.0.0.1:$eport" ;;
	haproxy)
		cat >"$tmp/haproxy.cfg" <<-EOF
			global
			    nbthread 1
			    maxconn 1000
			defaults
			    mode tcp
			    timeout connect 5s
			    timeout client 1m
			    timeout server 1m
			frontend fe
			    bind 127.0.0.1:$2
			    default_backend be
			backend be
			    server echo 127.0.0.1:$eport
		EOF
		printf '%s\n' haproxy -db -f "$tmp/haproxy.cfg"
		;;
	*) echo "forward.sh: unknown proxy $1 (want forward, forward-goroutine, haproxy or socat)" >&2; return 1 ;;
	esac
}

# start NAME TAG starts proxy NAME pinned to CPU 0 on a free port, setting
# srv (its pid: taskset execs it) and addr, and waits up to 10 s for it to
# accept connections. It tries another port if it dies, 3 times at most.
start() {
	local cmd try port
	for try in 1 2 3; do
		port=$(freeport)
		addr="127.0.0.1:$port"
		mapfile -t cmd < <(argv "$1" "$port")
		taskset -c 0 "${cmd[@]}" >"$out/$2.stdout" 2>"$out/$2.stderr" &
		srv=$!
		for _ in $(seq 200); do
			# --pid must name the proxy itself: taskset has exec'd it.
			if [ "$(cat "/proc/$srv/comm" 2>/dev/null)" != taskset ] && listens "$port"; then
				return 0
			fi
			kill -0 "$srv" 2>/dev/null || break
			sleep 0.05
		done
		stop
	done
	echo "forward.sh: $1 did not start:" >&2
	cat "$out/$2.stderr" >&2
	exit 1
}

# stop ends the proxy that start started (and any children it still has),
# waiting up to 5 s before SIGKILL.
stop() {
	kill -TERM "$srv" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$srv" 2>/dev/null || break
		sleep 0.05
	done
	pkids "$srv" | xargs -r kill -KILL 2>/dev/null || true
	kill -KILL "$srv" 2>/dev/null || true
	wait "$srv" 2>/dev/null || true
	srv=
}

# ticks PID prints the CPU time of process PID and of its children that it
# has waited for (utime + stime + cutime + cstime), in clock ticks.
ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$1/stat"; }

# sampler PID FILE writes, every 50 ms until killed, a line to FILE: the
# time (seconds since the epoch) and the CPU time, in clock ticks, of
# process PID (utime + stime + cutime + cstime: its own and its reaped
# children's) and of each of its live children (utime + stime), summed. A
# child that exits moves from the second term to the first, so the sum
# goes on smoothly.
sampler() {
	local pid=$1 file=$2 t kids
	while :; do
		t=$EPOCHREALTIME
		kids=$(cat /proc/"$pid"/task/*/children 2>/dev/null || true)
		# cat, not awk, reads the files: a child may be gone by then.
		# shellcheck disable=SC2086
		(cd /proc && cat "$pid/stat" $(printf '%s/stat ' $kids) 2>/dev/null) |
			awk -v t="$t" -v p="$pid" '{ id = $1; sub(/.*\) /, ""); n += $12 + $13; if (id == p) n += $14 + $15 }
				END { printf "%s %d\n", t, n }' >>"$file" || true
		sleep 0.05
	done
}

# interp FILE T prints the sampled CPU ticks in FILE interpolated at time T.
interp() {
	awk -v t="$2" '{ if ($1 <= t) { t0 = $1; v0 = $2; have0 = 1 } else if (!have1) { t1 = $1; v1 = $2; have1 = 1 } }
		END {
			if (!have0 || !have1) { print "nan"; exit }
			print v0 + (v1 - v0) * (t - t0) / (t1 - t0)
		}' "$1"
}

# childticks prints the CPU time of this shell's waited-for children, in
# clock ticks, from the output of the times builtin in FILE (its second
# line). times must run in this shell, not in a command substitution.
childticks() {
	sed -n 2p "$1" | awk '{ n = 0; for (i = 1; i <= 2; i++) { split($i, t, "m"); n += t[1] * 60 + t[2] } print int(n * 100 + 0.5) }'
}

hz=$(getconf CLK_TCK)

# load TAG ARGS... runs tcpkit bench pinned to CPU 1 against the proxy at
# addr, its JSON into TAG.json, with the sampler on the proxy's CPU. It sets
# scpu to the proxy's CPU seconds over the measured window from the
# sampler, and others to the share of CPUs 0 and 1 that processes other
# than the proxy (and its children), the echo server and the load took
# meanwhile, in percent. A run that counted errors is kept and reported;
# one that printed no result stops the script.
load() {
	local tag=$1 status=0 b0 s0 e0 c0 t0 b1 s1 e1 c1 t1 start elapsed ts te
	shift
	times >"$tmp/times0"
	b0=$(busy) s0=$(ticks "$srv") e0=$(ticks "$echo") t0=$EPOCHREALTIME
	: >"$out/$tag.cpu"
	taskset -c 1 bash -c "$(declare -f sampler); sampler $srv $out/$tag.cpu" &
	spid=$!
	# In the background, so that a signal ends the script (and the trap
	# every process) without waiting for the run.
	timeout 300 taskset -c 1 "$tk" bench --json --pid "$srv" "$@" "$addr" \
		>"$out/$tag.json" 2>"$out/$tag.bench.txt" &
	lpid=$!
	wait "$lpid" || status=$?
	lpid=
	# Let the sampler write a line after the window's end (bench has
	# finished, so it has ended), 2 s at most.
	local mark=$EPOCHREALTIME
	for _ in $(seq 40); do
		awk -v m="$mark" '$1 > m { f = 1 } END { exit !f }' "$out/$tag.cpu" && break
		sleep 0.05
	done
	kill -TERM "$spid" 2>/dev/null || true
	wait "$spid" 2>/dev/null || true
	spid=
	# socat's children exit as their connections end; once the parent has
	# reaped them their CPU time is in its cutime and cstime.
	for _ in $(seq 100); do
		[ -n "$(pkids "$srv")" ] || break
		sleep 0.05
	done
	b1=$(busy) s1=$(ticks "$srv") e1=$(ticks "$echo") t1=$EPOCHREALTIME
	times >"$tmp/times1"
	c0=$(childticks "$tmp/times0") c1=$(childticks "$tmp/times1")
	others=$(awk -v b="$((b1 - b0))" -v s="$((s1 - s0 + e1 - e0))" -v c="$((c1 - c0))" -v t="$t0" -v u="$t1" -v hz="$hz" \
		'BEGIN { x = 100 * (b - s - c) / hz / (2 * (u - t)); printf "%.0f", x < 0 ? 0 : x }')
	if ! grep -q '"messages"' "$out/$tag.json"; then
		echo "forward.sh: tcpkit bench $* failed ($status):" >&2
		cat "$out/$tag.bench.txt" >&2
		exit 1
	fi
	[ "$status" = 0 ] || echo "forward.sh: warning: $tag counted errors: $(tail -1 "$out/$tag.bench.txt")" >&2
	start=$(field "$out/$tag.json" 2 start | tr -d '"')
	elapsed=$(field "$out/$tag.json" 2 elapsed_ns)
	ts=$(date -d "$start" +%s.%N)
	te=$(awk -v s="$ts" -v e="$elapsed" 'BEGIN { printf "%.6f", s + e / 1e9 }')
	scpu=$(awk -v a="$(interp "$out/$tag.cpu" "$ts")" -v b="$(interp "$out/$tag.cpu" "$te")" -v hz="$hz" \
		'BEGIN { if (a == "nan" || b == "nan") print "nan"; else printf "%.3f", (b - a) / hz }')
}

IFS=, read -r -a names <<<"$proxies"
for name in "${names[@]}"; do argv "$name" 1 >/dev/null; done
cells=(pp64 pp4k stream)
runs="$out/runs.tsv" # cell rep proxy figure proxy-cpu-s per-cpu-s errors others-% sampler-cpu-s bench-cpu-s
: >"$runs"
# measure CELL NAME TAG runs one cell on a fresh proxy NAME, its raw files
# named TAG. A run during which other processes took more than maxothers
# percent of CPUs 0-1 is run again, 10 s later, up to 3 times in all (its
# files kept as TAG.busyN); the last is kept whatever it measured.
measure() {
	local cell=$1 name=$2 tag=$3 try x
	for try in 1 2 3; do
		start "$name" "$tag"
		echo "forward.sh: $tag ($addr)" >&2
		case "$cell" in
		pp64) load "$tag" --mode ping-pong -c "$conns" -s 64 -d "$duration" --warmup "$warmup" ;;
		pp4k) load "$tag" --mode ping-pong -c "$conns" -s 4096 -d "$duration" --warmup "$warmup" ;;
		stream) load "$tag" --mode stream -c 1 -s "$streamsize" -n $((streammib * 1048576 / streamsize)) --warmup "$warmup" ;;
		esac
		stop
		if [ "$others" -le "$maxothers" ] || [ "$try" = 3 ]; then
			break
		fi
		echo "forward.sh: other processes took $others% of CPUs 0-1 during $tag: again in 10 s" >&2
		for x in stdout stderr json bench.txt cpu; do mv "$out/$tag.$x" "$out/$tag.busy$try.$x"; done
		sleep 10
	done
	[ "$others" -le "$maxothers" ] || echo "forward.sh: warning: $tag kept with $others% of CPUs 0-1 taken by others" >&2
}

n=${#names[@]}
for rep in $(seq "$reps"); do
	for k in $(seq 0 $((n - 1))); do
		name=${names[$(((k + rep - 1) % n))]}
		for cell in "${cells[@]}"; do
			tag="$cell.$name.$rep"
			measure "$cell" "$name" "$tag"
			f="$out/$tag.json"
			msgs=$(field "$f" 2 messages)
			bcpu=$(field "$f" 4 cpu_ns | awk '{ printf "%.3f", $1 / 1e9 }')
			# socat's figure is the sampler's (bench sees only the parent);
			# the others' is bench's own.
			cpu=$bcpu
			[ "$name" != socat ] || cpu=$scpu
			if [ "$cell" = stream ]; then
				fig=$(field "$f" 2 bytes_per_sec | awk '{ print $1 / 1e6 }')
				per=$(awk -v m="$msgs" -v s="$streamsize" -v c="$cpu" 'BEGIN { print (c > 0 ? m * s / 1e6 / c : 0) }')
			else
				fig=$(field "$f" 2 msgs_per_sec)
				per=$(awk -v m="$msgs" -v c="$cpu" 'BEGIN { print (c > 0 ? m / c : 0) }')
			fi
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cell" "$rep" "$name" "$fig" "$cpu" "$per" \
				"$(errs "$f")" "$others" "$scpu" "$bcpu" >>"$runs"
		done
	done
done
stop_echo() {
	kill -TERM "$echo" 2>/dev/null || true
	wait "$echo" 2>/dev/null || true
	echo=
}
stop_echo

# ratios CELL NAME OTHER COLUMN prints NAME's COLUMN over OTHER's, one line
# per repetition.
ratios() {
	awk -F'\t' -v c="$1" -v s="$2" -v o="$3" -v k="$4" '$1 == c && $3 == s { a[$2] = $k } $1 == c && $3 == o { b[$2] = $k }
		END { for (r in a) if ((r in b) && b[r] > 0) print a[r] / b[r] }' "$runs"
}

# ratio CELL NAME OTHER prints the median (and range) of NAME's per proxy
# CPU-second figure over OTHER's, paired by repetition, then the median of
# the headline figures' ratios.
ratio() {
	local per fig
	per=$(ratios "$1" "$2" "$3" 6 | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { printf "–"; exit }
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		if (NR == 1) printf "**%.2f**", m; else printf "**%.2f** (%.2f–%.2f)", m, v[1], v[NR] }')
	fig=$(ratios "$1" "$2" "$3" 4 | median)
	[ "$fig" = nan ] || per="$per; $(printf '%.2f' "$fig")"
	echo "$per"
}

has() {
	local x
	for x in "${names[@]}"; do [ "$x" != "$1" ] || return 0; done
	return 1
}

summary() {
	echo "## tcpkit forward against HAProxy and socat ($(date -u '+%Y-%m-%d %H:%M UTC'))"
	echo
	echo "- each proxy pinned to CPU 0 (tcpkit forward: GOMAXPROCS=1, one loop; HAProxy $(haproxy -v | awk 'NR == 1 { print $3 }'): nbthread 1;"
	echo "  socat $(socat -V | awk '/socat version/ { print $3 }'): a child per connection, all on CPU 0), in front of one \`tcpkit echo\`;"
	echo "  \`tcpkit bench\` and the echo server share CPU 1"
	echo "- ping-pong: $conns connections, one message in flight on each, $duration after a $warmup warmup; stream: one"
	echo "  connection, $((streamsize / 1024)) KiB messages written flat out, until $streammib MiB has been echoed after a $warmup warmup"
	echo "- medians of $reps runs; ratios paired within a repetition: per proxy CPU-second in bold (median and range), then"
	echo "  the headline figure's (median)"
	echo "- tcpkit at $at (a clean export); $(go version | awk '{ print $3 }'); raw results: $out"
	echo
	echo "| cell | proxy | figure | proxy CPU-s | per proxy CPU-second | ÷ HAProxy | ÷ socat | others on CPUs 0–1 |"
	echo "|---|---|--:|--:|--:|--:|--:|--:|"
	local cell name unit fig cpu per rh rs e label
	for cell in "${cells[@]}"; do
		case "$cell" in
		pp64) label="ping-pong ${conns}×64B" unit=msgs ;;
		pp4k) label="ping-pong ${conns}×4KiB" unit=msgs ;;
		stream) label="stream, ${streammib} MiB" unit=MB ;;
		esac
		for name in "${names[@]}"; do
			fig=$(col "$cell" "$name" 4 | median)
			cpu=$(col "$cell" "$name" 5 | median)
			per=$(col "$cell" "$name" 6 | median)
			rh="–" rs="–"
			case "$name" in
			forward*)
				! has haproxy || rh=$(ratio "$cell" "$name" haproxy)
				! has socat || rs=$(ratio "$cell" "$name" socat)
				;;
			esac
			e=$(col "$cell" "$name" 7 | awk '{ n += $1 } END { print n + 0 }')
			[ "$e" = 0 ] || rh="$rh; $e errors"
			if [ "$unit" = MB ]; then
				echo "| $label | $name | $(num "$fig" 0) MB/s | $(num "$cpu" 2) | $(num "$per" 0) MB | $rh | $rs | $(busyothers "$cell" "$name") |"
			else
				echo "| $label | $name | $(num "$fig" 0) msgs/s | $(num "$cpu" 2) | $(num "$per" 0) msgs | $rh | $rs | $(busyothers "$cell" "$name") |"
			fi
		done
	done
	echo
	echo "figure: messages echoed per second of the measured window (stream: MB echoed per second, one way; each"
	echo "byte crosses the proxy twice); proxy CPU-s: the proxy's user + system time over the window (socat: the"
	echo "parent and its children, sampled); others: the share of CPUs 0 and 1 that processes other than the"
	echo "proxy, the echo server and the load took during the run, median (and largest)."
}
summary | tee "$out/summary.md"
