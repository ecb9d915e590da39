// Command webhook is kvinject's mutating admission webhook. See package
// github.com/kvinject/kvinject/pkg/webhook.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kvinject/kvinject/internal/program"
	"github.com/kvinject/kvinject/pkg/webhook"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := program.Main(ctx, "kvinject-webhook", webhook.NewOptions(), os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
