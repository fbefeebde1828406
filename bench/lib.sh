# lib.sh: the shell functions that tls.sh and forward.sh share. Sourced;
# $runs is the caller's table of runs.

# freeport prints a loopback port nothing listens on (at most 100 tries),
# below the kernel's ephemeral range where it can: the connect cell leaves
# thousands of ports of that range in use on 127.0.0.1.
freeport() {
	local p lo base=20000 span=30000
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=0
	if [ "$lo" -gt 12000 ]; then base=10000 span=$((lo - 10000)); fi
	for _ in $(seq 100); do
		p=$((base + RANDOM % span))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	echo "${0##*/}: no free port found" >&2
	return 1
}

# field FILE INDENT KEY prints the value of KEY at INDENT spaces in a
# tcpkit bench JSON result (an object's fields at that depth).
field() {
	local pad
	pad=$(printf '%*s' "$2" '')
	sed -n "s/^$pad\"$3\": \([^,{]*\),\{0,1\}\$/\1/p" "$1" | head -1
}

# errs FILE prints the errors a result counted, of every kind.
errs() {
	awk '/^  "errors": \{/ { in_errors = 1 }
		in_errors { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) n += $i }
		in_errors && /\}/ { in_errors = 0 }
		END { print n + 0 }' "$1"
}

# median prints the median of the numbers on stdin.
median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# num X DIGITS prints X with thousands separators and DIGITS decimals.
num() {
	awk -v x="$1" -v d="$2" 'BEGIN {
		s = sprintf("%." d "f", x); i = s; f = ""
		if (index(s, ".")) { i = substr(s, 1, index(s, ".") - 1); f = substr(s, index(s, ".")) }
		neg = (substr(i, 1, 1) == "-"); if (neg) i = substr(i, 2)
		while (length(i) > 3) { f = "," substr(i, length(i) - 2) f; i = substr(i, 1, length(i) - 3) }
		print (neg ? "-" : "") i f
	}'
}

# busyothers CELL NAME prints the median and the largest share of CPUs 0-1
# that other processes took during the cell's runs on NAME.
busyothers() {
	col "$1" "$2" 8 | sort -g | awk '{ v[NR] = $1 } END {
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		if (NR == 1) printf "%d%%", m; else printf "%d%% (max %d%%)", m, v[NR] }'
}

# busy prints the clock ticks CPUs 0 and 1 have spent busy (user, nice,
# system, irq, softirq, steal), every process together.
busy() { awk '$1 == "cpu0" || $1 == "cpu1" { n += $2 + $3 + $4 + $7 + $8 + $9 } END { print n }' /proc/stat; }

# col CELL NAME COLUMN prints that column of the cell's runs on NAME.
col() { awk -F'\t' -v c="$1" -v s="$2" -v k="$3" '$1 == c && $3 == s { print $k }' "$runs"; }
