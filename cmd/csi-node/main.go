// Command csi-node is kvinject's CSI node plugin. See package
// github.com/kvinject/kvinject/pkg/csi.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kvinject/kvinject/internal/program"
	"github.com/kvinject/kvinject/pkg/csi"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := program.Main(ctx, "kvinject-csi-node", csi.NewOptions(), os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
