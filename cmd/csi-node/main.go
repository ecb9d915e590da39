// Command csi-node is kvinject's CSI node plugin; see package csi.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/kvinject/kvinject/pkg/csi"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := csi.Execute(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		klog.ErrorS(err, "csi-node failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}
