package load

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Result is one measured run.
type Result struct {
	Concurrency int
	Duration    time.Duration
	// Proto is the protocol the server answered with: HTTP/1.1 or HTTP/2.0.
	Proto     string
	InProcess bool
	// Latencies of the successful reviews, sorted.
	Latencies []time.Duration
	// Errors counts failed reviews; FirstError describes the first.
	Errors     int
	FirstError string
	// ProcessCPU and MachineCPU are the cores used by this process (server and clients
	// when InProcess) and by the whole machine over the measured phase.
	ProcessCPU, MachineCPU float64
}

func (r *Result) sort() { slices.Sort(r.Latencies) }

// Reviews is the number of successful reviews.
func (r *Result) Reviews() int { return len(r.Latencies) }

// Rate is successful reviews per second.
func (r *Result) Rate() float64 { return float64(len(r.Latencies)) / r.Duration.Seconds() }

// Percentile returns the latency that p percent of the reviews did not exceed (nearest
// rank), or 0 without reviews.
func (r *Result) Percentile(p float64) time.Duration {
	n := len(r.Latencies)
	if n == 0 {
		return 0
	}
	rank := int(p/100*float64(n) + 0.9999999)
	rank = min(max(rank, 1), n)
	return r.Latencies[rank-1]
}

// WriteHeader writes the column names of WriteRow.
func WriteHeader(w io.Writer) {
	fmt.Fprintf(w, "%-5s %-5s %9s %9s %9s %9s %9s %9s %6s %8s %8s %10s\n",
		"conc", "proto", "reviews/s", "p50", "p90", "p99", "p99.9", "max", "errors", "cpu-proc", "cpu-host", "reviews/cpu-s")
}

// WriteRow writes r as one line. cpu-proc and cpu-host are the cores used by this
// process and by the whole machine; reviews/cpu-s divides the rate by cpu-proc, the
// capacity per core of this process, which other work on the machine does not lower
// as much as the rate.
func WriteRow(w io.Writer, r *Result) {
	proto := strings.TrimPrefix(r.Proto, "HTTP/")
	var maxLatency time.Duration
	if n := len(r.Latencies); n > 0 {
		maxLatency = r.Latencies[n-1]
	}
	perCPU := 0.0
	if r.ProcessCPU > 0 {
		perCPU = r.Rate() / r.ProcessCPU
	}
	fmt.Fprintf(w, "%-5d %-5s %9.0f %9s %9s %9s %9s %9s %6d %8.2f %8.2f %10.0f\n",
		r.Concurrency, proto, r.Rate(), ms(r.Percentile(50)), ms(r.Percentile(90)), ms(r.Percentile(99)),
		ms(r.Percentile(99.9)), ms(maxLatency), r.Errors, r.ProcessCPU, r.MachineCPU, perCPU)
	if r.FirstError != "" {
		fmt.Fprintf(w, "       first error: %s\n", r.FirstError)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond)) }
