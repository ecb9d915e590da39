// Command e2e drives the end-to-end cluster (package test/e2e/cluster):
//
//	e2e up        bring up the cluster with the emulator, webhook and node plugin
//	e2e down      tear everything down and leave the host as found
//	e2e demo      up (or reuse), apply the tutorial's annotated pod, show its secrets
//	e2e emulator  (internal) the cluster's Azure emulator process
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kvinject/kvinject/test/e2e/cluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cluster.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
}
