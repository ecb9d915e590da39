// Package program is the shape both of kvinject's commands share: one flag library
// (pflag), the same log flags and JSON log lines, --version, a configuration file that
// explicit flags override, validation of everything before anything runs, and one exit
// code convention. A command's main is a dozen lines:
//
//	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
//	code := program.Main(ctx, "kvinject-webhook", webhook.NewOptions(), os.Args[1:], os.Stdout, os.Stderr)
//	stop()
//	os.Exit(code)
package program

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"

	"github.com/kvinject/kvinject/internal/version"
)

// Options is a program's configuration: a typed struct owned by its package.
type Options interface {
	// BindFlags binds every field to a flag of fs, with the field's current value as
	// the flag's default.
	BindFlags(fs *pflag.FlagSet)
	// Validate checks every field and returns all problems at once. It changes nothing.
	Validate() error
	// Run runs the program until ctx ends. The logger is in ctx (logr.FromContext).
	Run(ctx context.Context) error
}

// ConfigFileOptions is implemented by Options that can also be read from a file.
type ConfigFileOptions interface {
	Options
	// ConfigFile is the file named by the flags, "" for none.
	ConfigFile() string
	// LoadConfigFile reads the file over the current values.
	LoadConfigFile() error
}

// Exit codes of Main.
const (
	ExitOK     = 0 // a clean shutdown, --help or --version
	ExitFailed = 1 // the program failed while running
	ExitUsage  = 2 // bad flags, configuration file or configuration
)

// Main parses args into opts, sets up logging, validates opts and runs it until ctx
// ends. Explicit flags win over the configuration file. --help prints the flags and
// --version the version to stdout; problems with flags and configuration go to stderr;
// the program's logs are JSON lines on stderr. Main never exits the process: it returns
// the exit code.
func Main(ctx context.Context, name string, opts Options, args []string, stdout, stderr io.Writer) int {
	fs, logOpts, showVersion := NewFlagSet(name, opts)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage of %s (%s):\n%s", name, version.Get(), fs.FlagUsages())
	}

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return ExitOK
		}
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return ExitUsage
	}
	if *showVersion {
		fmt.Fprintln(stdout, name, version.Get())
		return ExitOK
	}
	if cf, ok := opts.(ConfigFileOptions); ok && cf.ConfigFile() != "" {
		if err := cf.LoadConfigFile(); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return ExitUsage
		}
		// Again, so that what was given explicitly wins over the file.
		if err := fs.Parse(args); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return ExitUsage
		}
	}
	if err := errors.Join(opts.Validate(), logOpts.Validate()); err != nil {
		fmt.Fprintf(stderr, "%s: invalid configuration:\n%v\n", name, err)
		return ExitUsage
	}

	log := NewLogger(*logOpts, stderr).WithName(name)
	ctx = logr.NewContext(ctx, log)
	log.Info("Starting", "version", version.Get())
	if err := opts.Run(ctx); err != nil {
		log.Error(err, "Stopped with an error")
		return ExitFailed
	}
	log.Info("Stopped")
	return ExitOK
}

// NewFlagSet returns the flag set of a program: opts' flags, the log flags (into the
// returned LogOptions) and --version (into the returned bool). Main parses it; tests
// that check a manifest's args against a program parse it too.
func NewFlagSet(name string, opts Options) (*pflag.FlagSet, *LogOptions, *bool) {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SortFlags = false
	opts.BindFlags(fs)
	logOpts := &LogOptions{Level: "info", Format: "json"}
	logOpts.BindFlags(fs)
	showVersion := fs.Bool("version", false, "Print the version and exit.")
	return fs, logOpts, showVersion
}
