package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kvinject/kvinject/pkg/migrate"
)

func newMigrate() *cobra.Command {
	in := newInputs()
	cmd := &cobra.Command{
		Use:   "migrate -f FILE|DIR|-",
		Short: "Rewrite workloads from a SecretProviderClass volume to kvinject's annotations where the files stay the same",
		Long: `migrate prints the input with every workload that mounts a SecretProviderClass
through the Secrets Store CSI driver (secrets-store.csi.k8s.io) rewritten into
kvinject's annotations: the volume and its mounts removed, kvinject.io/secrets,
kvinject.io/vault, kvinject.io/tenant-id, kvinject.io/identity or kvinject.io/client-id,
kvinject.io/mount-path, and where needed kvinject.io/containers added.

It rewrites a workload only where the mounted files stay the same: same names,
contents, modes and identity. It proves that for each one: the webhook's own code
mutates the rewritten workload, and the node plugin's own parser reads the volume it
would write and the SecretProviderClass, which must agree. Otherwise the workload is
printed as it was and the reasons go to standard error; the exit status is then 1.

SecretProviderClasses come from the input or from --cluster files; the cluster
configuration, Namespaces, ServiceAccounts and KeyVaultAccessPolicies as for render.
Give --config the webhook's configuration (the config.yaml of the
kvinject-webhook-config ConfigMap): the check then uses the cluster's cloud and limits.
Rewritten documents are printed with their keys in order; the others as given.`,
		Example: `  kubectl kvinject migrate -f deploy.yaml -f secretproviderclass.yaml > deploy.kvinject.yaml
  kubectl get deploy web -o yaml | kubectl kvinject migrate -f - --cluster spc.yaml --config kvinject-config.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			docs, opts, err := in.read(cmd)
			if err != nil {
				return fail(cmd, err)
			}
			out, outcomes, err := migrate.Migrate(cmd.Context(), docs, opts)
			if err != nil {
				return fail(cmd, err)
			}
			for i, d := range out {
				if i > 0 {
					fmt.Fprintln(cmd.OutOrStdout(), "---")
				}
				fmt.Fprint(cmd.OutOrStdout(), strings.TrimRight(string(d.Data), "\n")+"\n")
			}
			errOut := cmd.ErrOrStderr()
			left := 0
			for _, o := range outcomes {
				name := fmt.Sprintf("%s %s %s/%s", o.Source, o.Kind, o.Namespace, o.Name)
				if o.Migrated {
					fmt.Fprintf(errOut, "migrated: %s\n", name)
				} else {
					left++
					fmt.Fprintf(errOut, "left as it was: %s\n", name)
					for _, r := range o.Reasons {
						fmt.Fprintf(errOut, "  - %s\n", r)
					}
				}
				for _, n := range o.Notes {
					fmt.Fprintf(errOut, "  note: %s\n", n)
				}
			}
			if len(outcomes) == 0 {
				fmt.Fprintln(errOut, "No workload with a secrets-store.csi.k8s.io volume found.")
			}
			if left > 0 {
				return fail(cmd, fmt.Errorf("%d of %d workloads left as they were", left, len(outcomes)))
			}
			return nil
		},
	}
	in.bind(cmd, "manifests to migrate")
	return cmd
}
