# tree.sh: sourced by fairness.sh and soak.sh.
#
# buildtree BIN REV PKG... builds the bench module's packages PKG... into
# the directory BIN against tcpkit at REV: a clean export of REV (git
# archive) with this working tree's bench/ module copied over its bench/,
# so that the tools need not be committed at REV, and so that another
# engineer's half-written change in the working tree is left out. REV
# "worktree" builds against the working tree as it is instead (warning if
# the library has uncommitted changes). It sets tree_desc to a one-line
# description of what was built, for the reports, and cleans up after
# itself.
buildtree() {
	local bin=$1 rev=$2 here src dirty
	shift 2
	here=$(pwd)
	mkdir -p "$bin"
	bin=$(cd "$bin" && pwd)
	if [ "$rev" = worktree ]; then
		dirty=$({ git -C .. status --porcelain --untracked-files=no -- . ':!bench' 2>/dev/null || true; } | wc -l)
		tree_desc="$(git -C .. log -1 --format='%h (%cs)' 2>/dev/null || echo 'a tree outside git'), working tree"
		if [ "$dirty" != 0 ]; then
			echo "${0##*/}: warning: building with $dirty uncommitted file(s) in the library" >&2
			tree_desc="$tree_desc with $dirty uncommitted file(s) outside bench/"
		fi
		go build -o "$bin/" "$@"
		return
	fi
	src=$(mktemp -d)
	tree_desc="$(git -C .. log -1 --format='%h (%cs)' "$rev"), a clean export"
	git -C .. archive "$rev" | tar -x -C "$src"
	rm -rf "$src/bench"
	mkdir -p "$src/bench"
	tar -C "$here" --exclude=./bin --exclude=./results -cf - . | tar -C "$src/bench" -xf -
	# -mod=mod: bench/go.sum may lack a checksum REV's library needs; only
	# the copy's go.sum changes.
	if ! (cd "$src/bench" && GOFLAGS=-mod=mod go build -o "$bin/" "$@"); then
		rm -rf "$src"
		return 1
	fi
	rm -rf "$src"
}
