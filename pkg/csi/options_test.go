package csi

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/kvinject/kvinject/pkg/contract"
)

func TestOptionsFlagsAndValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		args    []string
		wantErr []string
		check   func(t *testing.T, c *Options)
	}{
		{name: "defaults", args: []string{"--node-id", "n1"}, check: func(t *testing.T, c *Options) {
			if c.endpoint() != "/var/lib/kubelet/plugins/secrets-store.kvinject.io/csi.sock" || c.RegistrationSocket() != "/var/lib/kubelet/plugins_registry/secrets-store.kvinject.io-reg.sock" {
				t.Fatalf("endpoint %s, registration %s", c.endpoint(), c.RegistrationSocket())
			}
			if c.TokenAudience != contract.DefaultTokenAudience || c.MetricsBindAddress != ":8095" || c.HealthProbeBindAddress != ":8096" {
				t.Fatalf("%+v", c)
			}
			if n, _ := c.TmpfsBytes(); n != 4<<20 {
				t.Fatalf("tmpfs %d", n)
			}
		}},
		{name: "custom", args: []string{"--node-id", "n1", "--driver-name", "secrets-store.example.io", "--kubelet-root", "/k/", "--endpoint", "unix:///run/csi.sock", "--tmpfs-size", "1Mi", "--token-audience", "api://custom"}, check: func(t *testing.T, c *Options) {
			if c.endpoint() != "/run/csi.sock" || c.kubeletRoot() != "/k" || c.RegistrationSocket() != "/k/plugins_registry/secrets-store.example.io-reg.sock" || c.TokenAudience != "api://custom" {
				t.Fatalf("%+v", c)
			}
			if c.Endpoint != "unix:///run/csi.sock" || c.KubeletRoot != "/k/" {
				t.Fatalf("Validate changed the options: %+v", c)
			}
		}},
		{name: "driver name the webhook refuses", args: []string{"--node-id", "n1", "--driver-name", "Kv.Io"}, wantErr: []string{"--driver-name: \"Kv.Io\" is not a CSI driver name"}},
		{name: "short driver name", args: []string{"--node-id", "n1", "--driver-name", "kv2"}, check: func(t *testing.T, c *Options) {}},
		{name: "everything wrong", args: []string{"--node-id", "", "--driver-name", "-bad-", "--kubelet-root", "rel", "--endpoint", "rel.sock",
			"--metrics-bind-address", "nope", "--health-probe-bind-address", "nope", "--max-concurrent-fetches", "0", "--tmpfs-size", "1", "--publish-timeout", "0s",
			"--nmi-endpoint", "https://x", "--token-audience", ""},
			wantErr: []string{"--driver-name", "--node-id is required", "--kubelet-root", "--metrics-bind-address", "--health-probe-bind-address", "--max-concurrent-fetches",
				"--tmpfs-size", "--publish-timeout", "--nmi-endpoint", "--token-audience"}},
		{name: "relative endpoint", args: []string{"--node-id", "n1", "--endpoint", "rel.sock"}, wantErr: []string{"--endpoint"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := NewOptions()
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			c.BindFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, c)
				return
			}
			for _, w := range tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v lacks %q", err, w)
				}
			}
		})
	}
}

func TestCheckTargetPath(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	uid := "0f3e6c1a-1111-4aaa-8bbb-000000000001"
	good := KubeletTargetPath(root, uid, "kvinject-secrets")
	for _, tc := range []struct {
		target, uid string
		ok          bool
	}{
		{good, uid, true},
		{good, "", true},
		{good, "other", false},
		{root + "/pods/" + uid + "/volumes/kubernetes.io~csi/kvinject-secrets/mount/", uid, false},
		{root + "/pods/" + uid + "/volumes/kubernetes.io~csi/../kubernetes.io~csi/v/mount", uid, false},
		{root + "/pods/" + uid + "/volumes/kubernetes.io~empty-dir/v/mount", uid, false},
		{root + "/pods/" + uid + "/volumes/kubernetes.io~csi/v/other", uid, false},
		{root + "/pods/" + uid + "/volumes/kubernetes.io~csi/v/mount/deeper", uid, false},
		{root + "/pods/" + uid + "/volumes/kubernetes.io~csi/v\\x/mount", uid, false},
		{"/etc/mount", uid, false},
		{"relative/mount", uid, false},
		{root + "x/pods/" + uid + "/volumes/kubernetes.io~csi/v/mount", uid, false},
	} {
		err := checkTargetPath(root, tc.uid, tc.target)
		if tc.ok != (err == nil) {
			t.Errorf("checkTargetPath(%q, uid %q) = %v, want ok=%v", tc.target, tc.uid, err, tc.ok)
		}
	}
}
