package csi

import (
	"flag"
	"io"
	"os"
	"testing"

	"k8s.io/klog/v2"
)

// TestMain sends the in-process plugin's logs to io.Discard unless KVINJECT_TEST_LOGS
// is set, so test output stays readable. (The no-secrets-in-logs test runs the binary
// and captures its logs itself.)
func TestMain(m *testing.M) {
	if os.Getenv("KVINJECT_TEST_LOGS") == "" {
		fs := flag.NewFlagSet("klog", flag.ContinueOnError)
		klog.InitFlags(fs)
		_ = fs.Set("logtostderr", "false")
		_ = fs.Set("alsologtostderr", "false")
		_ = fs.Set("stderrthreshold", "FATAL")
		klog.SetOutput(io.Discard)
	}
	os.Exit(m.Run())
}
