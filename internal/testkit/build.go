package testkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// RepoRoot returns the root of the kvinject checkout: the directory of the go.mod of
// module github.com/kvinject/kvinject, found upwards from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module github.com/kvinject/kvinject\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the kvinject checkout (no go.mod of github.com/kvinject/kvinject above the working directory)")
		}
		dir = parent
	}
}

// BuildFlags are the flags the Makefile releases the programs with: static, no symbol
// tables, paths trimmed. Tests build with exactly these, so they run what ships.
var BuildFlags = []string{"-trimpath", "-ldflags=-s -w"}

// Build compiles the packages (import paths or ./-relative to the repository root) into
// outDir with BuildFlags and CGO_ENABLED=0, one `go build` for all of them.
func Build(ctx context.Context, outDir string, pkgs ...string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	args := append(append([]string{"build"}, BuildFlags...), "-o", outDir+string(filepath.Separator))
	cmd := exec.CommandContext(ctx, "go", append(args, pkgs...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", strings.Join(pkgs, " "), err, out)
	}
	return nil
}

var (
	binMu   sync.Mutex
	binDir  string
	binDone = map[string]string{}
)

// Binary builds the main package pkg (for example "./cmd/csi-node") once per test
// process and returns the path of the executable.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	binMu.Lock()
	defer binMu.Unlock()
	if p, ok := binDone[pkg]; ok {
		return p
	}
	if binDir == "" {
		d, err := os.MkdirTemp("", "kvinject-test-bin-")
		if err != nil {
			t.Fatal(err)
		}
		binDir = d
	}
	out := filepath.Join(binDir, strings.ReplaceAll(strings.Trim(pkg, "./"), "/", "_"))
	if err := Build(context.Background(), out, pkg); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(out, filepath.Base(pkg))
	binDone[pkg] = p
	return p
}
