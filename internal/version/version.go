// Package version reports the version of kvinject's programs. The Makefile and
// internal/images (make images, make release) stamp it at link time:
//
//	go build -ldflags "-X github.com/kvinject/kvinject/internal/version.version=v1.2.3" ./cmd/...
//
// An unstamped build (go build, go run, go test) reports what the Go toolchain recorded
// instead: the module version when built as a dependency, else the VCS revision.
package version

import (
	"runtime/debug"
	"sync"
)

// version is set with -ldflags -X; empty when the build was not stamped.
var version string

// Get returns the version: the stamped one, else "devel+<revision>[-dirty]" from the
// build information, else "devel". It never returns "".
func Get() string { return get() }

var get = sync.OnceValue(func() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	return fromBuildInfo(bi)
})

func fromBuildInfo(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return "devel+" + rev + dirty
}
