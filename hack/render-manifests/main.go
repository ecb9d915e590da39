// Command render-manifests writes deploy/webhook and deploy/csi from the Helm chart
// (release kvinject, namespace kvinject, default values), or with -check reports
// whether they are current. Run it from the repository root: make manifests,
// make verify-manifests.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/kvinject/kvinject/internal/chartrender"
)

func main() {
	check := flag.Bool("check", false, "report stale files and exit 1 instead of writing")
	root := flag.String("root", ".", "repository root")
	flag.Parse()
	if *check {
		diffs, err := chartrender.Diff(*root)
		if err != nil {
			fmt.Fprintln(os.Stderr, "render-manifests:", err)
			os.Exit(1)
		}
		if len(diffs) > 0 {
			for _, d := range diffs {
				fmt.Fprintln(os.Stderr, d)
			}
			fmt.Fprintln(os.Stderr, "deploy/ is stale: run 'make manifests'")
			os.Exit(1)
		}
		return
	}
	if err := chartrender.Write(*root); err != nil {
		fmt.Fprintln(os.Stderr, "render-manifests:", err)
		os.Exit(1)
	}
}
