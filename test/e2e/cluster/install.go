package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kvinject/kvinject/test/e2e/image"
	"github.com/kvinject/kvinject/test/emulator"
	"github.com/kvinject/kvinject/test/framework"
)

// installInCluster runs both programs the way users run them: the webhook as a
// Deployment behind the Service the shipped MutatingWebhookConfiguration names (used
// unchanged apart from its caBundle), the node plugin as a privileged DaemonSet that
// shares the kubelet's directory with Bidirectional mount propagation, both from the
// locally imported images. Two things differ from a cloud cluster, both because this
// one has no pod network to the API server and no kube-proxy: the pods use the host
// network (the API server, bound to 127.0.0.1, and the emulator are on loopback) and a
// kubeconfig from a hostPath; the API server reaches the webhook Service through its
// endpoints (--enable-aggregator-routing).
func (c *Cluster) installInCluster(ctx context.Context, ep emulator.Endpoints, chart bool) error {
	caPEM, err := os.ReadFile(c.path("pki", "ca.crt"))
	if err != nil {
		return err
	}
	manifest := c.inClusterManifest(ep)
	if chart {
		manifest = manifest[:strings.Index(manifest, "---\napiVersion: apps/v1\nkind: DaemonSet")]
	}
	file := c.path("kvinject.yaml")
	if err := os.WriteFile(file, []byte(manifest), 0o644); err != nil {
		return err
	}
	if out, err := c.Kubectl(ctx, "apply", "-f", file); err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	addr := fmt.Sprintf("%s:%d", NodeIP, WebhookPort)
	if err := c.waitForCluster(ctx, "webhook Deployment", 60*time.Second, "app.kubernetes.io/component=webhook", func(context.Context) error {
		return tlsReachable(addr, pool, "kvinject-webhook.kvinject.svc")
	}); err != nil {
		return err
	}
	mwc, err := framework.ShippedMutatingWebhook()
	if err != nil {
		return err
	}
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig.CABundle = caPEM
	}
	if _, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("install the webhook registration: %w", err)
	}
	c.logf("webhook: Deployment kvinject/kvinject-webhook behind Service kvinject-webhook (%s)", addr)
	if chart {
		if err := c.installNodePluginFromChart(ctx, ep); err != nil {
			return err
		}
	}
	return c.waitForCluster(ctx, "node plugin DaemonSet", 60*time.Second, "app.kubernetes.io/component=csi-node", c.driverRegistered)
}

// waitForCluster waits for check, reporting the pods of selector when it times out.
func (c *Cluster) waitForCluster(ctx context.Context, what string, timeout time.Duration, selector string, check func(context.Context) error) error {
	ctx2, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = check(ctx2); last == nil {
			return nil
		}
		select {
		case <-ctx2.Done():
			pods, _ := c.Kubectl(context.Background(), "-n", "kvinject", "describe", "pods", "-l", selector)
			logs, _ := c.Kubectl(context.Background(), "-n", "kvinject", "logs", "-l", selector, "--tail=30")
			return fmt.Errorf("%s not ready within %s: %v\n%s\n%s", what, timeout, last, pods, logs)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *Cluster) inClusterManifest(ep emulator.Endpoints) string {
	r := strings.NewReplacer(
		"RUN", c.run,
		"KUBELET_ROOT", c.KubeletRoot(),
		"WEBHOOK_IMAGE", image.Webhook,
		"CSI_IMAGE", image.CSINode,
		"NODE_IP", NodeIP,
		"WEBHOOK_PORT", fmt.Sprint(WebhookPort),
		"TENANT", TenantID,
		"DRIVER", DriverName,
		"NMI", "http://"+ep.NMI,
		"AZURE_DIAL", ep.HTTPS,
		"AZURE_CA", ep.CAFile,
	)
	return r.Replace(`apiVersion: v1
kind: Namespace
metadata:
  name: kvinject
---
apiVersion: v1
kind: Service
metadata:
  name: kvinject-webhook
  namespace: kvinject
spec:
  selector: {app.kubernetes.io/name: kvinject, app.kubernetes.io/component: webhook}
  ports:
    - {name: https, port: 443, targetPort: WEBHOOK_PORT}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: kvinject-webhook
  namespace: kvinject
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: kvinject, app.kubernetes.io/component: webhook}
  template:
    metadata:
      labels: {app.kubernetes.io/name: kvinject, app.kubernetes.io/component: webhook}
    spec:
      hostNetwork: true
      terminationGracePeriodSeconds: 2
      containers:
        - name: webhook
          image: WEBHOOK_IMAGE
          imagePullPolicy: Never
          args:
            - --host=NODE_IP
            - --port=WEBHOOK_PORT
            - --cert-dir=/etc/kvinject/tls
            - --kubeconfig=RUN/admin.kubeconfig
            - --metrics-bind-address=0
            - --health-probe-bind-address=0
            - --default-tenant-id=TENANT
            - --driver-name=DRIVER
          volumeMounts:
            - {name: tls, mountPath: /etc/kvinject/tls, readOnly: true}
            - {name: pki, mountPath: RUN/pki, readOnly: true}
            - {name: kubeconfig, mountPath: RUN/admin.kubeconfig, readOnly: true}
      volumes:
        - {name: tls, hostPath: {path: RUN/webhook-tls, type: Directory}}
        - {name: pki, hostPath: {path: RUN/pki, type: Directory}}
        - {name: kubeconfig, hostPath: {path: RUN/admin.kubeconfig, type: File}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: kvinject-csi-node
  namespace: kvinject
spec:
  selector:
    matchLabels: {app.kubernetes.io/name: kvinject, app.kubernetes.io/component: csi-node}
  template:
    metadata:
      labels: {app.kubernetes.io/name: kvinject, app.kubernetes.io/component: csi-node}
    spec:
      hostNetwork: true
      terminationGracePeriodSeconds: 2
      containers:
        - name: csi-node
          image: CSI_IMAGE
          imagePullPolicy: Never
          args:
            - --node-id=$(NODE_NAME)
            - --driver-name=DRIVER
            - --kubelet-root=KUBELET_ROOT
            - --kubeconfig=RUN/admin.kubeconfig
            - --metrics-address=
            - --nmi-endpoint=NMI
            - --azure-dial-address=AZURE_DIAL
            - --azure-ca-file=AZURE_CA
            - --v=2
          env:
            - name: NODE_NAME
              valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
          securityContext:
            privileged: true
          volumeMounts:
            - {name: kubelet, mountPath: KUBELET_ROOT, mountPropagation: Bidirectional}
            - {name: pki, mountPath: RUN/pki, readOnly: true}
            - {name: kubeconfig, mountPath: RUN/admin.kubeconfig, readOnly: true}
            - {name: emulator, mountPath: RUN/emulator, readOnly: true}
      volumes:
        - {name: kubelet, hostPath: {path: KUBELET_ROOT, type: Directory}}
        - {name: pki, hostPath: {path: RUN/pki, type: Directory}}
        - {name: kubeconfig, hostPath: {path: RUN/admin.kubeconfig, type: File}}
        - {name: emulator, hostPath: {path: RUN/emulator, type: Directory}}
`)
}

// tlsReachable completes a TLS handshake with addr, verifying serverName against pool.
func tlsReachable(addr string, pool *x509.CertPool, serverName string) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: serverName})
	if err != nil {
		return err
	}
	return conn.Close()
}

// driverRegistered reports whether the node plugin has registered with the kubelet.
func (c *Cluster) driverRegistered(ctx context.Context) error {
	n, err := c.Client.StorageV1().CSINodes().Get(ctx, NodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, d := range n.Spec.Drivers {
		if d.Name == DriverName {
			return nil
		}
	}
	return fmt.Errorf("driver %s not registered with the kubelet yet", DriverName)
}
