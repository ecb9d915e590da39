// Package testkit is the one toolkit kvinject's tests share: polling (Eventually, Poll,
// on apimachinery's wait), free loopback ports, the guards that skip a test outside CI
// and fail it under CI=true, and a builder of the repository's binaries, compiled once
// per test process with the release flags. The test CA is package internal/testcerts.
package testkit
