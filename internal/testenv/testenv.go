// Package testenv is the one place where tests decide whether they run in
// CI, and so whether something missing skips a test or fails it.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run in CI: the CI environment variable is
// set, to anything but "false" or "0". .ci/run runs with CI=true.
func InCI() bool {
	switch os.Getenv("CI") {
	case "", "false", "0":
		return false
	}
	return true
}

// SkipUnlessCI skips the test on a developer's machine that lacks
// something the test needs, and fails it in CI, where everything must run.
// Call it from the test that needs the thing, never while building a
// table of cases, so that one missing thing skips one test.
func SkipUnlessCI(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf(format+" (CI is set: .ci/run must provide it)", args...)
	}
	t.Skipf(format+" (CI would fail here)", args...)
}

// LookPath returns the path of an external program the test needs. When
// it is missing, the test fails in CI and is skipped elsewhere.
func LookPath(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		SkipUnlessCI(t, "%s is not installed", name)
	}
	return path
}
