package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/kvinject/kvinject/pkg/check"
)

func newCheck() *cobra.Command {
	flags := genericclioptions.NewConfigFlags(true)
	var (
		all    bool
		output string
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Say which SecretProviderClasses and workloads move from the Secrets Store CSI driver to kvinject",
		Long: `check scans the cluster of the current kubeconfig context and reports, for every
SecretProviderClass with provider azure and every workload with a secrets-store.csi.k8s.io
volume, one of three answers:

  moves unchanged     only the driver name changes
  moves with changes  the changes are listed
  cannot move         the field is named, with the alternative

It judges with kvinject's node plugin's own checks. The exit status is 0 when
everything moves, 1 otherwise.`,
		Example: `  kubectl kvinject check -A
  kubectl kvinject check -n shop -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fail(cmd, fmt.Errorf("-o %q: use table or json", output))
			}
			rc, err := flags.ToRESTConfig()
			if err != nil {
				return fail(cmd, err)
			}
			ns := ""
			if !all {
				if ns, _, err = flags.ToRawKubeConfigLoader().Namespace(); err != nil {
					return fail(cmd, err)
				}
			}
			kube, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return fail(cmd, err)
			}
			dyn, err := dynamic.NewForConfig(rc)
			if err != nil {
				return fail(cmd, err)
			}
			findings, err := check.Scan(cmd.Context(), kube, dyn, ns)
			if err != nil {
				return fail(cmd, err)
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if findings == nil {
					findings = []check.Finding{}
				}
				if err := enc.Encode(findings); err != nil {
					return err
				}
			} else {
				writeTable(cmd, findings)
			}
			var cannot int
			for _, f := range findings {
				if f.Verdict == check.Cannot {
					cannot++
				}
			}
			if cannot > 0 {
				return fail(cmd, fmt.Errorf("%d of %d cannot move", cannot, len(findings)))
			}
			return nil
		},
	}
	flags.AddFlags(cmd.Flags())
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "check every namespace")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

func writeTable(cmd *cobra.Command, findings []check.Finding) {
	if len(findings) == 0 {
		fmt.Fprintln(cmd.OutOrStdout(), "No SecretProviderClass with provider azure and no workload with a secrets-store.csi.k8s.io volume found.")
		return
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tKIND\tNAME\tVERDICT\tDETAILS")
	for _, f := range findings {
		details := append(append([]string(nil), f.Problems...), f.Changes...)
		if len(details) == 0 {
			details = []string{"-"}
		}
		for i, d := range details {
			if i == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Namespace, f.Kind, f.Name, f.Verdict, d)
			} else {
				fmt.Fprintf(tw, "\t\t\t\t%s\n", d)
			}
		}
	}
	tw.Flush()
}
