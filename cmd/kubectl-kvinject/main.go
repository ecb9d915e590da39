// Command kubectl-kvinject is kvinject's kubectl plugin (kubectl kvinject ...), built
// on the same packages as the webhook and the node plugin: render prints manifests with
// every pod template mutated exactly as the webhook would mutate it, check says which
// Secrets Store CSI driver workloads of a cluster move to kvinject, and migrate
// rewrites those whose files stay the same.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kvinject/kvinject/internal/version"
	"github.com/kvinject/kvinject/pkg/mutate"
	"github.com/kvinject/kvinject/pkg/render"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := newRoot(os.Stdin, os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil {
		os.Exit(1)
	}
}

func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "kubectl-kvinject",
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl kvinject"},
		Short:         "kvinject's kubectl plugin: see what kvinject does to your manifests, and move workloads over from the Secrets Store CSI driver",
		Version:       version.Get(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newRender(), newCheck(), newMigrate())
	return root
}

// inputs are the flags render and migrate share: the manifests, and what stands for
// the cluster (its configuration, Namespaces, ServiceAccounts and policies).
type inputs struct {
	files, clusterFiles []string
	configFile          string
	namespace           string
	cfg                 mutate.Config
	configFlags         *pflag.FlagSet
}

func newInputs() *inputs {
	in := &inputs{cfg: mutate.DefaultConfig()}
	// The cluster configuration's flags, which --config's file fills in.
	f := pflag.NewFlagSet("cluster configuration", pflag.ContinueOnError)
	f.StringVar(&in.cfg.Vault, "vault", in.cfg.Vault, "the cluster's default Key Vault")
	f.StringVar(&in.cfg.TenantID, "tenant-id", in.cfg.TenantID, "the cluster's default tenant")
	f.StringVar(&in.cfg.Identity, "identity", in.cfg.Identity, "the cluster's default AAD Pod Identity selector")
	f.StringVar(&in.cfg.CloudName, "cloud-name", in.cfg.CloudName, "the Azure cloud")
	f.StringVar(&in.cfg.DriverName, "driver-name", in.cfg.DriverName, "the CSI driver name the webhook writes")
	f.StringVar(&in.cfg.MountPath, "mount-path", in.cfg.MountPath, "the default mount path")
	f.IntVar(&in.cfg.MaxEntries, "max-entries", in.cfg.MaxEntries, "the longest alias list a pod may carry")
	in.configFlags = f
	return in
}

func (in *inputs) bind(cmd *cobra.Command, what string) {
	f := cmd.Flags()
	f.AddFlagSet(in.configFlags)
	f.StringSliceVarP(&in.files, "filename", "f", nil, what+": a file, a directory (its .yaml, .yml and .json files) or - for standard input; repeatable")
	f.StringSliceVar(&in.clusterFiles, "cluster", nil, "files or directories with the cluster's Namespaces, ServiceAccounts and KeyVaultAccessPolicies")
	f.StringVar(&in.configFile, "config", "", "the webhook's cluster configuration file (config.yaml of the kvinject-webhook-config ConfigMap)")
	f.StringVarP(&in.namespace, "namespace", "n", "default", "namespace of objects that name none")
}

// read returns the manifests and the render options.
func (in *inputs) read(cmd *cobra.Command) ([]render.Document, render.Options, error) {
	if len(in.files) == 0 {
		return nil, render.Options{}, fmt.Errorf("%s needs -f FILE, -f DIR or -f - (standard input)", cmd.Name())
	}
	if in.configFile != "" {
		// As the webhook does: the file over the defaults, then what was given
		// explicitly again, so that it wins over the file.
		explicit := map[string]string{}
		cmd.Flags().Visit(func(f *pflag.Flag) {
			if in.configFlags.Lookup(f.Name) != nil {
				explicit[f.Name] = f.Value.String()
			}
		})
		if err := mutate.LoadConfigFile(&in.cfg, in.configFile); err != nil {
			return nil, render.Options{}, err
		}
		for name, v := range explicit {
			if err := cmd.Flags().Set(name, v); err != nil {
				return nil, render.Options{}, err
			}
		}
	}
	docs, err := readAll(cmd.InOrStdin(), in.files)
	if err != nil {
		return nil, render.Options{}, err
	}
	cluster, err := readAll(nil, in.clusterFiles)
	if err != nil {
		return nil, render.Options{}, err
	}
	return docs, render.Options{Config: in.cfg, Namespace: in.namespace, Cluster: cluster}, nil
}

func newRender() *cobra.Command {
	in := newInputs()
	cmd := &cobra.Command{
		Use:   "render -f FILE|DIR|-",
		Short: "Print manifests with every pod template mutated as the kvinject webhook would",
		Long: `render prints the input with every pod template in it (Pods, Deployments,
StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs, CronJobs, in
multi-document YAML or a List) mutated exactly as the kvinject webhook would mutate its
pods, with the same code. A denial prints the webhook's message and the exit status is 1.

The cluster configuration comes from --config (the webhook's config.yaml: the chart's
kvinject-webhook-config ConfigMap) and the flags; Namespaces, ServiceAccounts and
KeyVaultAccessPolicies from the input itself or from --cluster files.`,
		Example: `  kubectl kvinject render -f deploy.yaml
  helm template my-app ./chart | kubectl kvinject render -f - --config kvinject-config.yaml --cluster namespaces.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			docs, opts, err := in.read(cmd)
			if err != nil {
				return fail(cmd, err)
			}
			results, err := render.Render(cmd.Context(), docs, opts)
			if err != nil {
				return fail(cmd, err)
			}
			var denied, printed int
			for _, r := range results {
				for _, w := range r.Warnings {
					fmt.Fprintf(cmd.ErrOrStderr(), "Warning: %s %s/%s: %s\n", r.Source, r.Kind, r.Name, w)
				}
				if r.Err != nil {
					denied++
					fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s %s/%s: %v\n", r.Source, r.Kind, r.Name, r.Err)
					continue
				}
				if printed++; printed > 1 {
					fmt.Fprintln(cmd.OutOrStdout(), "---")
				}
				fmt.Fprint(cmd.OutOrStdout(), strings.TrimRight(string(r.Data), "\n")+"\n")
			}
			if denied > 0 {
				return fail(cmd, fmt.Errorf("%d of %d documents refused", denied, len(results)))
			}
			return nil
		},
	}
	in.bind(cmd, "manifests to render")
	return cmd
}

// fail prints err as kubectl does and returns it (the exit status is 1).
func fail(cmd *cobra.Command, err error) error {
	fmt.Fprintf(cmd.ErrOrStderr(), "Error: %v\n", err)
	return err
}

// readAll reads the documents of every file, directory and "-" (stdin).
func readAll(stdin io.Reader, names []string) ([]render.Document, error) {
	var docs []render.Document
	for _, name := range names {
		if name == "-" {
			if stdin == nil {
				return nil, errors.New("- (standard input) is for -f only")
			}
			d, err := render.Split(stdin, "-")
			if err != nil {
				return nil, err
			}
			docs = append(docs, d...)
			continue
		}
		fi, err := os.Stat(name)
		if err != nil {
			return nil, err
		}
		files := []string{name}
		if fi.IsDir() {
			files = nil
			entries, err := os.ReadDir(name)
			if err != nil {
				return nil, err
			}
			for _, e := range entries {
				if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
					files = append(files, filepath.Join(name, e.Name()))
				}
			}
			sort.Strings(files)
		}
		for _, file := range files {
			f, err := os.Open(file)
			if err != nil {
				return nil, err
			}
			d, err := render.Split(f, file)
			f.Close()
			if err != nil {
				return nil, err
			}
			docs = append(docs, d...)
		}
	}
	return docs, nil
}
