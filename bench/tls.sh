#!/usr/bin/env bash
# tls.sh measures TLS servers (GitHub issue 11): tcpkit's echo server with
# Server.TLS, on its goroutine engine (tcpkit) and its epoll engine
# (tcpkit-epoll), against Go's net with crypto/tls (stdecho, its listener
# wrapped by tls.NewListener), all three serving one ECDSA P-256
# certificate that openssl makes under a temporary directory. Each server
# runs pinned to CPU 0, the load (`tcpkit bench --tls --insecure`, built
# from ../cmd/tcpkit as bin/tcpkit) to CPU 1, a fresh server process per
# run. Three cells:
#
#   ping-pong  50 connections × 4 KiB, one message in flight on each, 5 s
#              measured after a 1 s warmup: messages per server CPU-second
#   connect    full handshakes: 50 connections being made at once, each
#              dialled, TLS handshake (TLS 1.3 with crypto/tls's defaults;
#              the client keeps no session cache, so nothing is resumed),
#              one 64-byte echo, closed; 5 s after a 1 s warmup: handshakes
#              per server CPU-second
#   idle       2,000 TLS connections, each handshaken and checked with one
#              echo, then held idle for 3 s: the server's RSS growth per
#              connection (from /proc, before the first and after the hold)
#
# ping-pong and connect run 3 times per server, the servers interleaved
# (their order rotates between repetitions); the tables give medians, and
# the ratios to std are medians of the ratios paired within a repetition.
# idle runs once per server. The Markdown tables go to stdout (and
# summary.md), every raw JSON result to results/tls-<timestamp>/.
#
# Pinning keeps the server and the load apart, not other people's work
# away: each run also measures the share of CPUs 0-1 that other processes
# took meanwhile (busy time in /proc/stat, less the server's and the
# load's), runs again (up to 3 times, 10 s apart) when it is over 10%
# (-max-others), and the table shows it.
#
#   bash tls.sh                          the three servers, 3 repetitions: about 2.5 minutes on a quiet machine
#   bash tls.sh -reps 1 -duration 2s -idle-conns 500    a quick look
#   bash tls.sh -servers tcpkit-epoll,std -max-others 5
#
# Needs: Go, openssl, taskset (util-linux), and at least 2 CPUs.
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh

servers=tcpkit,tcpkit-epoll,std
reps=3
duration=5s
warmup=1s
conns=50
size=4096
cconns=50 # connections being made at once, in the connect cell
idle=2000
hold=3s
maxothers=10 # percent of CPUs 0-1 other processes may take during a run
while [ $# -gt 0 ]; do
	case "$1" in
	-servers | --servers) servers=$2; shift ;;
	-reps | --reps) reps=$2; shift ;;
	-duration | --duration) duration=$2; shift ;;
	-idle-conns | --idle-conns) idle=$2; shift ;;
	-max-others | --max-others) maxothers=$2; shift ;;
	*) echo "tls.sh: unknown argument $1 (see the comment at the top)" >&2; exit 2 ;;
	esac
	shift
done

command -v taskset >/dev/null || { echo "tls.sh: taskset (util-linux) is needed" >&2; exit 1; }
command -v openssl >/dev/null || { echo "tls.sh: openssl is needed to make the certificate" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "tls.sh: needs at least 2 CPUs (server on CPU 0, load on CPU 1)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((idle + 100)) ]; then
	echo "tls.sh: warning: ulimit -n is $(ulimit -n); holding $idle connections needs over $((idle + 100))" >&2
fi

tmp=$(mktemp -d)
srv=
lpid=
cleanup() {
	if [ -n "$lpid" ]; then
		kill -TERM "$lpid" 2>/dev/null || true # timeout passes it on to tcpkit bench
		wait "$lpid" 2>/dev/null || true
	fi
	if [ -n "$srv" ]; then
		kill -TERM "$srv" 2>/dev/null || true
		wait "$srv" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p bin
echo "tls.sh: building" >&2
# The servers are built from the working tree: say so if the library has
# changes not committed.
dirty=$({ git -C .. status --porcelain --untracked-files=no -- . ':!bench' 2>/dev/null || true; } | wc -l)
[ "$dirty" = 0 ] || echo "tls.sh: warning: building with $dirty uncommitted file(s) in the library" >&2
# If bench/go.sum lacks a checksum the parent module needs (a dependency the
# library gained), build through a temporary workspace of both modules,
# whose go.sum files together have them all.
if ! go build -o bin/ ./peers/stdecho ./peers/tcpkitecho 2>"$tmp/build.err"; then
	if ! grep -q 'missing go.sum entry' "$tmp/build.err"; then
		cat "$tmp/build.err" >&2
		exit 1
	fi
	echo "tls.sh: warning: bench/go.sum lacks entries the library needs (go mod tidy in bench/);" \
		"building through a temporary go.work of both modules" >&2
	printf 'go 1.26.0\n\nuse (\n\t%s\n\t%s\n)\n' "$(cd .. && pwd)" "$(pwd)" >"$tmp/go.work"
	GOWORK=$tmp/go.work go build -o bin/ ./peers/stdecho ./peers/tcpkitecho
fi
(cd .. && go build -o bench/bin/tcpkit ./cmd/tcpkit)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
	-keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>"$tmp/openssl.err" ||
	{ cat "$tmp/openssl.err" >&2; exit 1; }

out="results/tls-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
echo "tls.sh: raw results in $out" >&2

# argv NAME ADDR prints the command line of server NAME, one word a line.
argv() {
	local tls=(-tls-cert "$tmp/cert.pem" -tls-key "$tmp/key.pem")
	case "$1" in
	tcpkit) printf '%s\n' bin/tcpkitecho -addr "$2" "${tls[@]}" ;;
	tcpkit-epoll) printf '%s\n' bin/tcpkitecho -addr "$2" -engine epoll "${tls[@]}" ;;
	std) printf '%s\n' bin/stdecho -addr "$2" "${tls[@]}" ;;
	*) echo "tls.sh: unknown server $1 (want tcpkit, tcpkit-epoll or std)" >&2; return 1 ;;
	esac
}

# start NAME TAG starts server NAME pinned to CPU 0 on a free port, setting
# srv (its pid: taskset execs it) and addr, and waits up to 10 s for it to
# listen. A port taken meanwhile makes it try another, 3 times at most.
start() {
	local cmd try
	for try in 1 2 3; do
		addr="127.0.0.1:$(freeport)"
		mapfile -t cmd < <(argv "$1" "$addr")
		taskset -c 0 "${cmd[@]}" >"$out/$2.stdout" 2>"$out/$2.stderr" &
		srv=$!
		for _ in $(seq 200); do
			if grep -q '^listening' "$out/$2.stdout" 2>/dev/null; then
				# --pid must name the server itself: taskset has exec'd it.
				[ "$(cat "/proc/$srv/comm" 2>/dev/null)" != taskset ] && return 0
			fi
			kill -0 "$srv" 2>/dev/null || break
			sleep 0.05
		done
		stop
		grep -q 'address already in use' "$out/$2.stderr" || break
	done
	echo "tls.sh: $1 did not start:" >&2
	cat "$out/$2.stderr" >&2
	exit 1
}

# stop ends the server that start started, waiting up to 5 s before
# SIGKILL.
stop() {
	kill -TERM "$srv" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$srv" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$srv" 2>/dev/null || true
	wait "$srv" 2>/dev/null || true
	srv=
}

# ticks PID prints the CPU time, user and system, of process PID in clock
# ticks.
ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# childticks prints the CPU time of this shell's waited-for children, in
# clock ticks, from the output of the times builtin in FILE (its second
# line, "0m1.250s 0m0.370s"). times must run in this shell, not in a
# command substitution, whose children are its own.
childticks() {
	sed -n 2p "$1" | awk '{ n = 0; for (i = 1; i <= 2; i++) { split($i, t, "m"); n += t[1] * 60 + t[2] } print int(n * 100 + 0.5) }'
}

# load TAG ARGS... runs tcpkit bench pinned to CPU 1 against the server at
# addr, its JSON into TAG.json; a run that counted errors is kept and
# reported, one that printed no result stops the script. It sets others to
# the share of CPUs 0 and 1 that processes other than the server and the
# load took meanwhile, in percent: other people's work on a shared machine,
# which slows both sides.
load() {
	local tag=$1 status=0 b0 s0 c0 t0 b1 s1 c1 t1
	shift
	times >"$tmp/times0"
	b0=$(busy) s0=$(ticks "$srv") t0=$(date +%s.%N)
	# In the background, so that a signal ends the script (and the trap
	# both processes) without waiting for the run.
	timeout 300 taskset -c 1 bin/tcpkit bench --tls --insecure --json --pid "$srv" "$@" "$addr" \
		>"$out/$tag.json" 2>"$out/$tag.bench.txt" &
	lpid=$!
	wait "$lpid" || status=$?
	lpid=
	b1=$(busy) s1=$(ticks "$srv") t1=$(date +%s.%N)
	times >"$tmp/times1"
	c0=$(childticks "$tmp/times0") c1=$(childticks "$tmp/times1")
	others=$(awk -v b="$((b1 - b0))" -v s="$((s1 - s0))" -v c="$((c1 - c0))" -v t="$t0" -v u="$t1" \
		'BEGIN { x = (b - s - c) / (2 * (u - t)); printf "%.0f", x < 0 ? 0 : x }')
	if ! grep -q '"messages"' "$out/$tag.json"; then
		echo "tls.sh: tcpkit bench $* failed ($status):" >&2
		cat "$out/$tag.bench.txt" >&2
		exit 1
	fi
	[ "$status" = 0 ] || echo "tls.sh: warning: $tag counted errors: $(tail -1 "$out/$tag.bench.txt")" >&2
}

IFS=, read -r -a names <<<"$servers"
for name in "${names[@]}"; do argv "$name" x >/dev/null; done
runs="$out/runs.tsv" # cell rep server figure/s server-cpu-ns per-cpu-s errors others-%
: >"$runs"
# measure CELL NAME TAG runs one cell on a fresh server NAME, its raw
# files named TAG. A run during which other processes took more than
# maxothers percent of CPUs 0-1 is run again, 10 s later, up to 3 times in
# all (its files kept as TAG.busyN); the last is kept whatever it measured.
measure() {
	local cell=$1 name=$2 tag=$3 try
	for try in 1 2 3; do
		start "$name" "$tag"
		echo "tls.sh: $tag ($addr)" >&2
		case "$cell" in
		ping-pong) load "$tag" --mode ping-pong -c "$conns" -s "$size" -d "$duration" --warmup "$warmup" ;;
		# Spread over 16 source addresses: each run leaves thousands of
		# ports in TIME_WAIT.
		connect) load "$tag" --mode connect -c "$cconns" -d "$duration" --warmup "$warmup" --sources 16 ;;
		idle) load "$tag" --mode idle -c "$idle" -d "$hold" --sources $((idle / 800 + 1)) ;;
		esac
		stop
		if [ "$others" -le "$maxothers" ] || [ "$try" = 3 ]; then
			break
		fi
		echo "tls.sh: other processes took $others% of CPUs 0-1 during $tag: again in 10 s" >&2
		for x in stdout stderr json bench.txt; do mv "$out/$tag.$x" "$out/$tag.busy$try.$x"; done
		sleep 10
	done
	[ "$others" -le "$maxothers" ] || echo "tls.sh: warning: $tag kept with $others% of CPUs 0-1 taken by others" >&2
}

n=${#names[@]}
for rep in $(seq "$reps"); do
	for k in $(seq 0 $((n - 1))); do
		name=${names[$(((k + rep - 1) % n))]}
		for cell in ping-pong connect; do
			tag="$cell.$name.$rep"
			measure "$cell" "$name" "$tag"
			f="$out/$tag.json"
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cell" "$rep" "$name" "$(field "$f" 2 msgs_per_sec)" \
				"$(field "$f" 4 cpu_ns)" "$(field "$f" 4 msgs_per_cpu_second)" "$(errs "$f")" "$others" >>"$runs"
		done
	done
done
for name in "${names[@]}"; do
	tag="idle.$name"
	measure idle "$name" "$tag"
	f="$out/$tag.json"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' idle 1 "$name" "$(field "$f" 4 rss_per_conn_bytes)" \
		"$(field "$f" 4 server_connect_cpu_ns)" "$(field "$f" 4 established)" "$(errs "$f")" "$others" \
		"$(field "$f" 4 alive)" "$(field "$f" 4 rss_before_bytes)" >>"$runs"
done

# ratios CELL NAME prints NAME's per-CPU-second figure over std's, one
# line per repetition.
ratios() {
	awk -F'\t' -v c="$1" -v s="$2" '$1 == c && $3 == s { a[$2] = $6 } $1 == c && $3 == "std" { b[$2] = $6 }
		END { for (r in a) if ((r in b) && b[r] > 0) print a[r] / b[r] }' "$runs"
}

has_std=
for name in "${names[@]}"; do [ "$name" != std ] || has_std=1; done

summary() {
	echo "## TLS: tcpkit against Go's crypto/tls ($(date -u '+%Y-%m-%d %H:%M UTC'))"
	echo
	echo "- servers pinned to CPU 0 (GOMAXPROCS=1, one loop), \`tcpkit bench --tls --insecure\` pinned to CPU 1;"
	echo "  one ECDSA P-256 certificate; TLS 1.3, crypto/tls's defaults on both sides"
	echo "- ping-pong: $conns connections × $size B, $duration after a $warmup warmup; connect: $cconns connections"
	echo "  being made at once, each a full handshake, one 64 B echo and a close, $duration after $warmup;"
	echo "  medians of $reps runs, ratios to std paired within a repetition (median, and range)"
	echo "- idle: $idle connections, each handshaken and echoed once, held $hold; RSS growth from before the"
	echo "  first connection to the end of the hold, per connection; one run"
	local at
	at=$(git -C .. log -1 --format='%h (%cs)' 2>/dev/null || echo "a tree outside git")
	[ "$dirty" = 0 ] || at="$at with $dirty uncommitted file(s) outside bench/"
	echo "- tcpkit at $at; $(go version | awk '{ print $3 }'); raw results: $out"
	echo
	echo "| cell | server | figure | server CPU-s | per server CPU-second | ÷ std | others on CPUs 0–1 |"
	echo "|---|---|--:|--:|--:|--:|--:|"
	local cell name unit fig cpu per rat e
	for cell in ping-pong connect; do
		unit=msgs
		[ "$cell" = ping-pong ] || unit=handshakes
		for name in "${names[@]}"; do
			fig=$(col "$cell" "$name" 4 | median)
			cpu=$(col "$cell" "$name" 5 | awk '{ print $1 / 1e9 }' | median)
			per=$(col "$cell" "$name" 6 | median)
			rat="–"
			if [ -n "$has_std" ] && [ "$name" != std ]; then
				rat=$(ratios "$cell" "$name" | sort -g | awk '{ v[NR] = $1 } END {
					m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
					if (NR == 1) printf "**%.2f**", m; else printf "**%.2f** (%.2f–%.2f)", m, v[1], v[NR] }')
			fi
			e=$(col "$cell" "$name" 7 | awk '{ n += $1 } END { print n + 0 }')
			[ "$e" = 0 ] || rat="$rat; $e errors"
			case "$cell" in
			ping-pong) label="ping-pong ${conns}×$((size / 1024))KiB" ;;
			*) label="connect (full handshakes, ${cconns} at once)" ;;
			esac
			echo "| $label | $name | $(num "$fig" 0) $unit/s | $(num "$cpu" 2) | $(num "$per" 0) $unit | $rat | $(busyothers "$cell" "$name") |"
		done
	done
	local std_rss
	std_rss=$(col idle std 4)
	for name in "${names[@]}"; do
		local rss ccpu est alive
		rss=$(col idle "$name" 4)
		ccpu=$(col idle "$name" 5 | awk '{ print $1 / 1e9 }')
		est=$(col idle "$name" 6)
		e=$(col idle "$name" 7)
		alive=$(col idle "$name" 9)
		rat="–"
		if [ -n "$has_std" ] && [ "$name" != std ]; then
			rat=$(awk -v a="$rss" -v b="$std_rss" 'BEGIN { if (b > 0) printf "%.2f (lower is better)", a / b; else print "–" }')
		fi
		[ "$e" = 0 ] || rat="$rat; $e errors"
		per=$(awk -v n="$est" -v c="$ccpu" 'BEGIN { if (c > 0) print n / c; else print 0 }')
		echo "| idle, $(num "$idle" 0) TLS connections ($(num "$alive" 0) alive after the hold) | $name | $(num "$rss" 0) B RSS per connection | $(num "$ccpu" 2) opening them | $(num "$per" 0) handshakes, while opening | $rat | $(busyothers idle "$name") |"
	done
	echo
	echo "figure: messages (or handshakes) per second of the measured window; server CPU-s: the server's user +"
	echo "system time over the window, from /proc; ÷ std: the per-CPU-second figure over std's (for idle,"
	echo "RSS per connection over std's); others: the share of CPUs 0 and 1 that processes other than the"
	echo "server and the load took during the run (busy time from /proc/stat less theirs), median (and largest)."
}
summary | tee "$out/summary.md"
