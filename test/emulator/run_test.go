package emulator

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/kvinject/kvinject/internal/testkit"
)

// readBanner reads Run's output up to the endpoints file line and returns the lines.
func readBanner(t *testing.T, r io.Reader, deadline time.Duration) []string {
	t.Helper()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var out []string
	timeout := time.After(deadline)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("output ended early: %q", out)
			}
			out = append(out, l)
			if strings.HasPrefix(l, "endpoints file: ") {
				go func() {
					for range lines {
					}
				}()
				return out
			}
		case <-timeout:
			t.Fatalf("not ready within %s: %q", deadline, out)
		}
	}
}

var bannerRE = []*regexp.Regexp{
	regexp.MustCompile(`^Azure emulator ready in \S+$`),
	regexp.MustCompile(`^https \(Key Vault, Entra ID\): 127\.0\.0\.1:\d+$`),
	regexp.MustCompile(`^authority host: https://login\.microsoftonline\.com/$`),
	regexp.MustCompile(`^vault az-key-vault-demo: https://az-key-vault-demo\.vault\.azure\.net/$`),
	regexp.MustCompile(`^nmi: http://127\.0\.0\.1:\d+/host/token/$`),
	regexp.MustCompile(`^proxy: http://127\.0\.0\.1:\d+ \(HTTPS_PROXY; with SSL_CERT_FILE=.*/ca\.crt\)$`),
	regexp.MustCompile(`^ca file: .*/ca\.crt$`),
	regexp.MustCompile(`^endpoints file: .*/endpoints\.json$`),
}

// checkStarted checks the banner and uses the state directory the way another process
// would: endpoints.json and ca.crt only.
func checkStarted(t *testing.T, lines []string, stateDir string) {
	t.Helper()
	if len(lines) != len(bannerRE) {
		t.Fatalf("banner %q", lines)
	}
	for i, re := range bannerRE {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d %q does not match %s", i, lines[i], re)
		}
	}
	ep, err := LoadEndpoints(filepath.Join(stateDir, EndpointsFileName))
	if err != nil {
		t.Fatal(err)
	}
	if ep.CAFile != filepath.Join(stateDir, CAFileName) || ep.IMDS != "" {
		t.Errorf("endpoints %+v", ep)
	}
	client, err := ClientFromEndpoints(ep)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := azidentity.NewClientSecretCredential("72f988bf-86f1-41af-91ab-2d7cd011db47", "5d7e9f1a-2b3c-4d5e-8f6a-7b8c9d0e1f2a", "emulator-client-secret",
		&azidentity.ClientSecretCredentialOptions{DisableInstanceDiscovery: true, ClientOptions: azcore.ClientOptions{
			Transport: client, Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: ep.AuthorityHost}}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := azsecrets.NewClient(ep.Vaults["az-key-vault-demo"], cred, &azsecrets.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: client}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.GetSecret(t.Context(), "DatabasePassword", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *s.Value != "MyP@ssword123456" {
		t.Errorf("value %q", *s.Value)
	}
}

func TestRun(t *testing.T) {
	stateDir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- Run(ctx, []string{"--seed", "testdata/tutorial.yaml", "--listen", "127.0.0.1:0",
			"--nmi-listen", "127.0.0.1:0", "--imds-listen", "off", "--state-dir", stateDir}, pw, io.Discard)
		pw.Close()
	}()
	lines := readBanner(t, pr, 5*time.Second)
	t.Logf("ready in %s", time.Since(start))
	checkStarted(t, lines, stateDir)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRunErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "missing seed", args: []string{"--seed", "testdata/none.yaml"}, wantErr: "read seed: open testdata/none.yaml: no such file or directory"},
		{name: "extra argument", args: []string{"extra"}, wantErr: "unexpected arguments: [extra]"},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "flag provided but not defined: -nope"},
		{name: "empty listen", args: []string{"--listen", ""}, wantErr: "--listen must not be empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Run(t.Context(), tc.args, io.Discard, io.Discard)
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestBinary builds cmd/azure-emulator and checks that it starts from a seed file and
// prints its endpoints.
func TestBinary(t *testing.T) {
	bin := testkit.Binary(t, "./test/cmd/azure-emulator")
	stateDir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), bin, "--seed", "testdata/tutorial.yaml", "--nmi-listen", "127.0.0.1:0",
		"--imds-listen", "off", "--state-dir", stateDir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := readBanner(t, stdout, 5*time.Second)
	t.Logf("binary ready in %s: %q", time.Since(start), lines[0])
	checkStarted(t, lines, stateDir)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}
