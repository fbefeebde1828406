#!/usr/bin/env bash
# Mutation testing of the core package with gremlins (v0.6.0): it flips
# operators and conditions in the chosen files, one at a time, runs the
# package's tests against each, and reports which mutants the tests killed
# and which lived. It is a script to run by hand, not part of CI: a full run
# over the default files takes tens of minutes.
#
#   scripts/mutate.sh                          conn, pipe and server code
#   FILES='pipe.go' scripts/mutate.sh          chosen files of the root package
#   scripts/mutate.sh --diff origin/main       only the lines a change touched
#   scripts/mutate.sh -o /tmp/mutants.json     also a machine-readable report
#
# Efficacy is killed / (killed + lived); the target is 85% or more. Each
# mutant that lives either gets a test or a reason in docs/MUTATION.md.
set -euo pipefail
cd "$(dirname "$0")/.."

gremlins=$(command -v gremlins || echo "$(go env GOPATH)/bin/gremlins")
if [ ! -x "$gremlins" ]; then
	go install github.com/go-gremlins/gremlins/cmd/gremlins@v0.6.0
fi

files=${FILES:-conn.go conn_state.go conn_write.go engine_goroutine.go pipe.go server.go}
# gremlins takes files to leave out: every Go file of the root package that
# was not chosen, and every other package.
exclude=(-E '^(bench|cmd|codec|examples|internal|scripts)/')
for f in *.go; do
	case "$f" in *_test.go) continue ;; esac
	case " $files " in *" $f "*) ;; *) exclude+=(-E "^${f//./\\.}\$") ;; esac
done

# Cached test times would make gremlins' per-mutant timeouts far too short.
go clean -testcache
# The server tests run on the goroutine engine only, which runs the rules
# and the goroutine engine's code, in half the time of both engines; set
# TCPKIT_TEST_ENGINES=goroutine,epoll to run both.
export TCPKIT_TEST_ENGINES=${TCPKIT_TEST_ENGINES:-goroutine}
exec "$gremlins" unleash "${exclude[@]}" --workers 1 --timeout-coefficient 3 "$@" .
