// Command csi-node is kvinject's CSI node plugin. See package
// github.com/kvinject/kvinject/pkg/csi.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	// The CA roots for Key Vault and Entra ID, compiled in: the image is an empty base
	// with no /etc/ssl. Go uses them only when the system has none (SSL_CERT_FILE or
	// /etc/ssl/certs win), and go.mod pins them, so the image stays reproducible.
	_ "golang.org/x/crypto/x509roots/fallback"

	"github.com/kvinject/kvinject/internal/program"
	"github.com/kvinject/kvinject/pkg/csi"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := program.Main(ctx, "kvinject-csi-node", csi.NewOptions(), os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
