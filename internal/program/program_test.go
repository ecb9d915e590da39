package program

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/internal/version"
)

// fakeOptions is a program with one setting, a config file, and a Run that logs.
type fakeOptions struct {
	Greeting string `json:"greeting"`
	Config   string `json:"-"`
	invalid  bool
	runErr   error
	ran      string
}

func (o *fakeOptions) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Greeting, "greeting", o.Greeting, "what to say")
	fs.StringVar(&o.Config, "config", o.Config, "config file")
	fs.BoolVar(&o.invalid, "invalid", o.invalid, "fail validation")
}
func (o *fakeOptions) ConfigFile() string { return o.Config }
func (o *fakeOptions) LoadConfigFile() error {
	b, err := os.ReadFile(o.Config)
	if err != nil {
		return err
	}
	return yaml.UnmarshalStrict(b, o)
}
func (o *fakeOptions) Validate() error {
	if o.invalid {
		return errors.New("--greeting: not polite")
	}
	return nil
}
func (o *fakeOptions) Run(ctx context.Context) error {
	o.ran = o.Greeting
	logr.FromContextOrDiscard(ctx).Info("Greeting", "greeting", o.Greeting)
	return o.runErr
}

func TestMain_(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte("greeting: from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		args           []string
		runErr         error
		code           int
		ran            string
		stdout, stderr string
	}{
		{name: "version", args: []string{"--version"}, code: ExitOK, stdout: "kvinject-test " + version.Get() + "\n"},
		{name: "help", args: []string{"--help"}, code: ExitOK, stdout: "--log-level"},
		{name: "bad log level", args: []string{"--log-level", "loud"}, code: ExitUsage, stderr: `--log-level "loud": use error, info, debug or a number 0-10`},
		{name: "unknown flag", args: []string{"--nope"}, code: ExitUsage, stderr: "kvinject-test: unknown flag: --nope"},
		{name: "flag default", args: nil, code: ExitOK, ran: "hello"},
		{name: "config file over the default", args: []string{"--config", file}, code: ExitOK, ran: "from-file"},
		{name: "explicit flag over the config file", args: []string{"--greeting", "from-flag", "--config", file}, code: ExitOK, ran: "from-flag"},
		{name: "missing config file", args: []string{"--config", file + ".missing"}, code: ExitUsage, stderr: "no such file"},
		{name: "invalid", args: []string{"--invalid"}, code: ExitUsage, stderr: "invalid configuration:\n--greeting: not polite"},
		{name: "run fails", args: nil, runErr: errors.New("boom"), code: ExitFailed, ran: "hello", stderr: `"error":"boom"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := &fakeOptions{Greeting: "hello", runErr: tc.runErr}
			var stdout, stderr bytes.Buffer
			code := Main(t.Context(), "kvinject-test", opts, tc.args, &stdout, &stderr)
			if code != tc.code || opts.ran != tc.ran {
				t.Fatalf("code %d, ran %q; want %d, %q\nstdout: %s\nstderr: %s", code, opts.ran, tc.code, tc.ran, &stdout, &stderr)
			}
			if !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("stdout %q, want %q; stderr %q, want %q", &stdout, tc.stdout, &stderr, tc.stderr)
			}
		})
	}
}

// TestLogLines: every line is JSON with the keys both programs share.
func TestLogLines(t *testing.T) {
	var stderr bytes.Buffer
	if code := Main(t.Context(), "kvinject-test", &fakeOptions{Greeting: "hi"}, []string{"--log-level=info"}, &bytes.Buffer{}, &stderr); code != ExitOK {
		t.Fatalf("code %d: %s", code, &stderr)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want Starting, Greeting and Stopped, got:\n%s", &stderr)
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %s", l)
		}
		for _, k := range []string{"level", "ts", "logger", "msg"} {
			if _, ok := m[k]; !ok {
				t.Fatalf("line lacks %q: %s", k, l)
			}
		}
		if m["logger"] != "kvinject-test" {
			t.Fatalf("logger %v", m["logger"])
		}
	}
	if !strings.Contains(lines[1], `"greeting":"hi"`) {
		t.Fatalf("the program's key/value pairs are missing: %s", lines[1])
	}
}
