package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kvinject/kvinject/internal/testkit"
	"github.com/kvinject/kvinject/test/e2e/cluster"
)

// BenchmarkNode50Replicas is the node-scale issue's item 10, on the real node (make
// soak): a Deployment of 50 replicas with 10 Key Vault objects each, rotation on (the
// kubelet republishes every 10 s here, the plugin's interval is 5 s). Once every pod
// runs, the emulator's counters over ten intervals give the calls per interval, next
// to the anchor's pods x (objects + 4).
func BenchmarkNode50Replicas(b *testing.B) {
	ctx := context.Background()
	for i := range 10 {
		if _, err := c.SetSecret(ctx, cluster.Vault, fmt.Sprintf("scale-%02d", i), fmt.Sprintf("scale-value-%02d", i)); err != nil {
			b.Fatal(err)
		}
	}
	applyB(b, "scale-deployment.yaml")
	began := time.Now()
	if out, err := c.Kubectl(ctx, "rollout", "status", "deployment/scale-app", "--timeout=600s"); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	b.Logf("50 replicas running %.0fs after the apply", time.Since(began).Seconds())
	const interval = 5 * time.Second
	for b.Loop() {
		if _, err := c.EmulatorTotals(ctx, true); err != nil {
			b.Fatal(err)
		}
		time.Sleep(10 * interval)
		t, err := c.EmulatorTotals(ctx, false)
		if err != nil {
			b.Fatal(err)
		}
		per := func(n int) float64 { return float64(n) / 10 }
		calls := t.KeyVaultReads + t.KeyVaultChallenges + t.TokenRequests
		b.ReportMetric(per(t.KeyVaultReads), "kv-reads/interval")
		b.ReportMetric(per(t.KeyVaultChallenges), "kv-challenges/interval")
		b.ReportMetric(per(t.TokenRequests), "token-requests/interval")
		b.ReportMetric(per(t.TLSHandshakes), "new-tls/interval")
		b.ReportMetric(float64(50*(10+4))/per(calls), "x-fewer-than-anchor")
	}
	// Every replica holds its ten files.
	pods, err := c.Kubectl(ctx, "get", "pods", "-l", "app=scale-app", "-o", "jsonpath={.items[*].metadata.name}")
	if err != nil {
		b.Fatal(err)
	}
	names := strings.Fields(pods)
	for _, p := range []string{names[0], names[len(names)-1]} {
		if got, _ := c.Kubectl(ctx, "exec", p, "--", "cat", "/mnt/secrets-store/scale-09"); got != "scale-value-09" {
			b.Fatalf("%s: scale-09 = %q", p, got)
		}
	}
}

// applyB applies an embedded manifest for a benchmark and deletes it at the end.
func applyB(b *testing.B, name string) {
	b.Helper()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		_, _ = c.Kubectl(ctx, "delete", "-f", c.RunPath(name), "--ignore-not-found", "--wait=true", "--timeout=180s")
		_ = testkit.Poll(ctx, time.Second, 2*time.Minute, "scale pods gone", func(ctx context.Context) error {
			out, err := c.Kubectl(ctx, "get", "pods", "-l", "app=scale-app", "-o", "name")
			if err != nil || strings.TrimSpace(out) != "" {
				return fmt.Errorf("pods left: %s %v", out, err)
			}
			return nil
		})
	})
	writeManifest(b, name)
	if out, err := c.Kubectl(context.Background(), "apply", "-f", c.RunPath(name)); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
}
