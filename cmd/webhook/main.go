// Command webhook is kvinject's mutating admission webhook. See package
// github.com/kvinject/kvinject/pkg/webhook.
package main

import (
	"os"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/kvinject/kvinject/pkg/webhook"
)

func main() {
	ctx := ctrl.SetupSignalHandler()
	os.Exit(webhook.Main(ctx, os.Args[1:], os.Stderr))
}
