package csi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// healthProbeTimeout bounds one probe of the CSI socket.
const healthProbeTimeout = 3 * time.Second

// healthHandler serves /healthz and /readyz: 200 "ok" when the CSI socket at endpoint
// answers a Probe call, 503 with the reason otherwise. The kubelet reaches the plugin
// only through that socket, so a process that is up but whose socket is gone or stuck
// is not healthy.
func healthHandler(endpoint string) http.Handler {
	probe := func(w http.ResponseWriter, r *http.Request) {
		if err := probeSocket(r.Context(), endpoint); err != nil {
			http.Error(w, "CSI socket "+endpoint+": "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", probe)
	mux.HandleFunc("/readyz", probe)
	return mux
}

// probeSocket dials the CSI socket and calls Identity.Probe.
func probeSocket(ctx context.Context, endpoint string) error {
	ctx, cancel := context.WithTimeout(ctx, healthProbeTimeout)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := csi.NewIdentityClient(conn).Probe(ctx, &csi.ProbeRequest{})
	if err != nil {
		return err
	}
	if ready := resp.GetReady(); ready != nil && !ready.GetValue() {
		return fmt.Errorf("the plugin reports not ready")
	}
	return nil
}
