package csi

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
)

// Execute is the csi-node command: it parses args (the plugin's flags and klog's),
// validates the configuration and runs the plugin until ctx ends. --version prints the
// version to out. It never exits the process; main does.
func Execute(ctx context.Context, args []string, out io.Writer) error {
	cfg := DefaultConfig()
	fs := pflag.NewFlagSet("csi-node", pflag.ContinueOnError)
	fs.SetOutput(out)
	cfg.BindFlags(fs)
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	version := fs.Bool("version", false, "Print the version and exit.")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return err
	}
	if *version {
		_, err := fmt.Fprintln(out, "csi-node", Version)
		return err
	}
	p, err := NewPlugin(cfg, PluginOptions{})
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	return p.Run(ctx)
}
