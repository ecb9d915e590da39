// Command azure-emulator runs the Azure emulator (Key Vault, Entra ID, NMI, IMDS)
// for demos and out-of-process tests. See package emulator.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kvinject/kvinject/test/emulator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := emulator.Run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "azure-emulator:", err)
		stop()
		os.Exit(1)
	}
}
