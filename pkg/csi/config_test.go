package csi

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/kvinject/kvinject/pkg/mutate"
)

func TestConfigFlagsAndValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		args    []string
		wantErr []string
		check   func(t *testing.T, c Config)
	}{
		{name: "defaults", args: []string{"--node-id", "n1"}, check: func(t *testing.T, c Config) {
			if c.Endpoint != "/var/lib/kubelet/plugins/secrets-store.kvinject.io/csi.sock" || c.RegistrationSocket() != "/var/lib/kubelet/plugins_registry/secrets-store.kvinject.io-reg.sock" {
				t.Fatalf("endpoint %s, registration %s", c.Endpoint, c.RegistrationSocket())
			}
			if n, _ := c.TmpfsBytes(); n != 4<<20 {
				t.Fatalf("tmpfs %d", n)
			}
		}},
		{name: "custom", args: []string{"--node-id", "n1", "--driver-name", "secrets-store.example.io", "--kubelet-root", "/k/", "--endpoint", "unix:///run/csi.sock", "--tmpfs-size", "1Mi"}, check: func(t *testing.T, c Config) {
			if c.Endpoint != "/run/csi.sock" || c.KubeletRoot != "/k" || c.RegistrationSocket() != "/k/plugins_registry/secrets-store.example.io-reg.sock" {
				t.Fatalf("%+v", c)
			}
		}},
		{name: "everything wrong", args: []string{"--node-id", "", "--driver-name", "-bad-", "--kubelet-root", "rel", "--endpoint", "rel.sock",
			"--metrics-address", "nope", "--max-concurrent-fetches", "0", "--tmpfs-size", "1", "--publish-timeout", "0s",
			"--nmi-endpoint", "https://x", "--azure-dial-address", "nohost", "--azure-ca-file", "/does/not/exist"},
			wantErr: []string{"--driver-name", "--node-id is required", "--kubelet-root", "--endpoint", "--metrics-address", "--max-concurrent-fetches",
				"--tmpfs-size", "--publish-timeout", "--nmi-endpoint", "--azure-dial-address", "--azure-ca-file"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
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

// TestDriverNameMatchesWebhook: the webhook writes volumes for the driver this plugin
// registers by default; the two defaults are one contract.
func TestDriverNameMatchesWebhook(t *testing.T) {
	if DefaultDriverName != mutate.DefaultDriverName {
		t.Fatalf("csi.DefaultDriverName %q != mutate.DefaultDriverName %q", DefaultDriverName, mutate.DefaultDriverName)
	}
}
