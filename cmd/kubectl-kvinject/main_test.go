package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run runs kubectl kvinject with args and stdin, as kubectl runs a plugin, and returns
// its standard output and error.
func run(stdin string, args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	root := newRoot(strings.NewReader(stdin), &out, &errOut)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errOut.String(), err
}

// TestRenderCommand runs kubectl kvinject render as kubectl runs a plugin: a file and
// standard input, the configuration from --config, a denial on standard error and a
// non-zero result.
func TestRenderCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	config := write("config.yaml", "vault: cluster-kv\ntenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47\ndriverName: kv.contoso.com\n")
	good := write("good.yaml", `apiVersion: v1
kind: Pod
metadata: {name: p, annotations: {kvinject.io/secrets: DatabaseLogin, kvinject.io/identity: app}}
spec: {containers: [{name: c, image: nginx}]}
`)
	bad := `apiVersion: v1
kind: Pod
metadata: {name: q, annotations: {kvinject.io/secrets: "x=a/b", kvinject.io/identity: app}}
spec: {containers: [{name: c, image: nginx}]}
`

	out, errOut, err := run("", "render", "-f", good, "--config", config)
	if err != nil {
		t.Fatalf("render: %v\n%s", err, errOut)
	}
	for _, want := range []string{"driver: kv.contoso.com", "keyvaultName: cluster-kv", "kvinject.io/status: injected", "aadpodidbinding: app"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// A flag given explicitly wins over --config.
	out, _, err = run("", "render", "-f", good, "--config", config, "--vault", "flag-kv")
	if err != nil || !strings.Contains(out, "keyvaultName: flag-kv") {
		t.Errorf("--vault over --config: %v\n%s", err, out)
	}

	out, errOut, err = run(bad, "render", "-f", "-", "--config", config)
	if err == nil {
		t.Fatal("a denied pod rendered with success")
	}
	if out != "" {
		t.Errorf("a denied pod printed %q", out)
	}
	want := `Error: -#1 Pod/q: admission webhook "pods.kvinject.io" denied the request: kvinject.io/secrets: entry 1 "x=a/b": the file name "a/b" contains a path separator; use a plain file name` + "\n" +
		"Error: 1 of 1 documents refused\n"
	if !strings.HasSuffix(errOut, want) {
		t.Errorf("stderr:\n%s\nwant it to end with:\n%s", errOut, want)
	}

	out, _, err = run("", "--help")
	if err != nil || !strings.Contains(out, "render") {
		t.Errorf("--help: %v\n%s", err, out)
	}
	if _, errOut, err := run("", "render"); err == nil || !strings.Contains(errOut, "render needs -f FILE") {
		t.Errorf("render without -f: %v %s", err, errOut)
	}
}

// TestMigrateCommand: kubectl kvinject migrate prints every document, the workload
// that moves rewritten, says what it did on standard error, and exits non-zero when a
// workload was left as it was.
func TestMigrateCommand(t *testing.T) {
	before, err := os.ReadFile("../../pkg/migrate/testdata/before.yaml")
	if err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile("../../pkg/migrate/testdata/after.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, err := run(string(before), "migrate", "-f", "-")
	if err != nil {
		t.Fatalf("migrate: %v\n%s", err, errOut)
	}
	if out != string(after) {
		t.Errorf("output:\n%s\nwant pkg/migrate/testdata/after.yaml:\n%s", out, after)
	}
	if !strings.HasPrefix(errOut, "migrated: -#2 Deployment shop/shop-web\n") {
		t.Errorf("stderr:\n%s", errOut)
	}

	// Without its SecretProviderClass, the Deployment stays as it was.
	deployment := string(before[strings.Index(string(before), "apiVersion: apps/v1"):])
	out, errOut, err = run(deployment, "migrate", "-f", "-")
	if err == nil {
		t.Fatal("a workload left as it was exited with success")
	}
	if strings.TrimSpace(out) != strings.TrimSpace(deployment) {
		t.Errorf("the workload left as it was is printed changed:\n%s", out)
	}
	want := "left as it was: -#1 Deployment shop/shop-web\n" +
		"  - volume secrets-store-inline: SecretProviderClass shop/shop-db not found (or not provider azure)\n" +
		"Error: 1 of 1 workloads left as they were\n"
	if errOut != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", errOut, want)
	}
	if _, errOut, err := run("", "migrate"); err == nil || !strings.Contains(errOut, "migrate needs -f FILE") {
		t.Errorf("migrate without -f: %v %s", err, errOut)
	}
}

// TestREADMEShowsTheHelp: the README's kubectl kvinject --help is the plugin's.
func TestREADMEShowsTheHelp(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const start = "$ kubectl kvinject --help\n"
	i := strings.Index(string(readme), start)
	if i < 0 {
		t.Fatalf("README.md lacks %q", start)
	}
	shown, _, _ := strings.Cut(string(readme[i+len(start):]), "```")
	out, _, err := run("", "--help")
	if err != nil {
		t.Fatal(err)
	}
	if shown != out {
		t.Fatalf("README.md shows:\n%s\nkubectl kvinject --help prints:\n%s", shown, out)
	}
}
