package load

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"

	"github.com/kvinject/kvinject/test/load/fixture"
)

// Main is the webhook-load program: it parses args (flags of Options), runs the
// webhook in-process against a local control plane (KUBEBUILDER_ASSETS) unless -url is
// given, drives it at each -concurrency level and
// writes a report to out. It returns flag.ErrHelp for -h.
func Main(ctx context.Context, args []string, out io.Writer) (err error) {
	opts := DefaultOptions()
	fs := flag.NewFlagSet("webhook-load", flag.ContinueOnError)
	fs.SetOutput(out)
	opts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := opts.Validate(); err != nil {
		return err
	}
	body, err := fixture.Review()
	if err != nil {
		return err
	}

	var target *Target
	where := "in-process webhook (Run) on 127.0.0.1 with a local kube-apiserver (server and clients share the CPUs)"
	if opts.URL != "" {
		if target, err = RemoteTarget(opts.URL, opts.CAFile, opts.ServerName); err != nil {
			return err
		}
		where = opts.URL
	} else {
		assets := os.Getenv("KUBEBUILDER_ASSETS")
		if assets == "" {
			return errors.New("KUBEBUILDER_ASSETS is not set: it must name the folder of etcd and kube-apiserver (make tools prints it), or give -url")
		}
		local, err := StartLocal(ctx, assets)
		if err != nil {
			return fmt.Errorf("start the webhook: %w", err)
		}
		defer func() { err = errors.Join(err, local.Stop()) }()
		target = local.Target
	}

	if opts.CPUProfile != "" {
		f, err := os.Create(opts.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	fmt.Fprintf(out, "webhook-load: %s\n", where)
	fmt.Fprintf(out, "review: %d bytes (pod with 3 containers, 20 aliases); %d CPUs, GOMAXPROCS %d; %v warm-up + %v per level; keep-alive, one connection per client\n",
		len(body), runtime.NumCPU(), runtime.GOMAXPROCS(0), opts.Warmup, opts.Duration)
	WriteHeader(out)
	var failed []error
	for _, c := range opts.Concurrency {
		r, err := Drive(ctx, target, body, c, opts.Warmup, opts.Duration, opts.Timeout)
		if err != nil {
			return err
		}
		WriteRow(out, r)
		if r.Errors > 0 {
			failed = append(failed, fmt.Errorf("%d reviews failed at concurrency %d", r.Errors, c))
		}
	}
	return errors.Join(failed...)
}
