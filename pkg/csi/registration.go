package csi

import (
	"context"

	"k8s.io/klog/v2"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// SupportedCSIVersions are the CSI versions announced to the kubelet.
var SupportedCSIVersions = []string{"1.0.0"}

// RegistrationServer answers the kubelet's plugin watcher on the registration socket,
// so the DaemonSet needs no node-driver-registrar sidecar. Safe for concurrent use.
type RegistrationServer struct {
	registerapi.UnimplementedRegistrationServer
	driver, endpoint string
}

// NewRegistrationServer announces driver with its CSI socket endpoint (a path).
func NewRegistrationServer(driver, endpoint string) *RegistrationServer {
	return &RegistrationServer{driver: driver, endpoint: endpoint}
}

// GetInfo tells the kubelet the plugin's type, name, endpoint and CSI versions.
func (s *RegistrationServer) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              s.driver,
		Endpoint:          s.endpoint,
		SupportedVersions: SupportedCSIVersions,
	}, nil
}

// NotifyRegistrationStatus logs the kubelet's verdict.
func (s *RegistrationServer) NotifyRegistrationStatus(ctx context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	log := klog.FromContext(ctx)
	if st.GetPluginRegistered() {
		log.Info("Registered with the kubelet", "driver", s.driver)
	} else {
		log.Error(nil, "The kubelet refused the registration", "driver", s.driver, "reason", st.GetError())
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}
