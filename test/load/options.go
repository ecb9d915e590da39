package load

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Options configure a load run. Start from DefaultOptions, bind flags with BindFlags,
// and call Validate before use.
type Options struct {
	// Duration is how long each concurrency level is measured.
	Duration time.Duration
	// Warmup is how long each level runs before measuring (connections, caches, GC).
	Warmup time.Duration
	// Concurrency lists the numbers of concurrent clients, one run each.
	Concurrency []int
	// Timeout bounds each review.
	Timeout time.Duration
	// URL targets a running webhook; empty serves one in-process on 127.0.0.1.
	URL string
	// CAFile is the PEM CA that signed the target's certificate (URL only; empty uses
	// the system roots).
	CAFile string
	// ServerName is the name to verify the target's certificate for (URL only; empty
	// uses the URL's host).
	ServerName string
	// CPUProfile, when set, receives a CPU profile of the measured phases: of the
	// server as well as the clients when the server is in-process.
	CPUProfile string
}

// DefaultOptions returns a 10 s run at a latency-friendly and a throughput-oriented
// concurrency, against an in-process server.
func DefaultOptions() Options {
	return Options{
		Duration:    10 * time.Second,
		Warmup:      2 * time.Second,
		Concurrency: []int{4, 32},
		Timeout:     5 * time.Second,
	}
}

// BindFlags binds every field to a flag of fs, with the field's current value as the
// flag's default.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.DurationVar(&o.Duration, "duration", o.Duration, "measured time per concurrency level")
	fs.DurationVar(&o.Warmup, "warmup", o.Warmup, "unmeasured time before each level")
	fs.Var((*intList)(&o.Concurrency), "concurrency", "comma-separated numbers of concurrent keep-alive clients, one run each")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "timeout of one review")
	fs.StringVar(&o.URL, "url", o.URL, "URL of a running webhook (https://host:port/mutate-pod); empty serves one in-process on 127.0.0.1")
	fs.StringVar(&o.CAFile, "ca-file", o.CAFile, "PEM CA of the -url webhook's certificate (default: system roots)")
	fs.StringVar(&o.ServerName, "server-name", o.ServerName, "name to verify the -url webhook's certificate for (default: the URL's host)")
	fs.StringVar(&o.CPUProfile, "cpuprofile", o.CPUProfile, "write a CPU profile of the measured phases to this file")
}

// Validate returns every problem of o at once.
func (o *Options) Validate() error {
	var errs []error
	if o.Duration <= 0 {
		errs = append(errs, fmt.Errorf("-duration: %v is not positive", o.Duration))
	}
	if o.Warmup < 0 {
		errs = append(errs, fmt.Errorf("-warmup: %v is negative", o.Warmup))
	}
	if o.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("-timeout: %v is not positive", o.Timeout))
	}
	if len(o.Concurrency) == 0 {
		errs = append(errs, errors.New("-concurrency: no level given"))
	}
	for _, c := range o.Concurrency {
		if c < 1 || c > 4096 {
			errs = append(errs, fmt.Errorf("-concurrency: %d is not between 1 and 4096", c))
		}
	}
	if o.URL != "" {
		if u, err := url.Parse(o.URL); err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("-url: %q is not an https:// URL", o.URL))
		}
	} else if o.CAFile != "" || o.ServerName != "" {
		errs = append(errs, errors.New("-ca-file and -server-name apply to -url only"))
	}
	return errors.Join(errs...)
}

// intList is a flag.Value of comma-separated integers.
type intList []int

func (l *intList) String() string {
	s := make([]string, len(*l))
	for i, n := range *l {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(v string) error {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("%q is not a number", f)
		}
		out = append(out, n)
	}
	*l = out
	return nil
}
