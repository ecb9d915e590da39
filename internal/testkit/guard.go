package testkit

import (
	"os"
	"testing"
)

// InCI reports whether the tests run in CI (CI=true, as .ci/run and CI systems set it).
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// Require skips the test with reason when ok is false, except under CI, where it fails
// it: a CI machine that lacks root, a built binary or the test assets must not pass
// by skipping what it could not run.
func Require(t testing.TB, ok bool, reason string) {
	t.Helper()
	if ok {
		return
	}
	if InCI() {
		t.Fatalf("%s (CI=true: a missing prerequisite is a failure, not a skip)", reason)
	}
	t.Skip(reason)
}

// RequireRoot is Require for tests that mount, make cgroups or network namespaces.
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "needs root (tmpfs mounts); run as root, as CI does")
}
