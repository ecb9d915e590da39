package webhook

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"go.uber.org/zap/zapcore"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// Main parses args, runs the webhook until ctx is cancelled and returns the process
// exit code: 0 after a clean shutdown, 2 for bad flags or configuration, 1 otherwise.
// Logs are JSON lines on stderr.
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("kvinject-webhook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := DefaultConfig()
	cfg.BindFlags(fs)
	zapOpts := zap.Options{Development: false, TimeEncoder: zapcore.RFC3339NanoTimeEncoder}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log := zap.New(zap.UseFlagOptions(&zapOpts), zap.WriteTo(stderr))
	ctrllog.SetLogger(log)
	if err := cfg.Complete(); err != nil {
		fmt.Fprintf(stderr, "kvinject-webhook: invalid configuration:\n%v\n", err)
		return 2
	}
	if err := Run(ctx, cfg, Options{Logger: log}); err != nil {
		log.Error(err, "Webhook stopped")
		return 1
	}
	return 0
}
