// Command benchcharts draws the benchmark charts of the docs (docs/img/*.svg) from the
// benchmarks' own output, with gonum/plot: make charts runs the benchmarks and then
// this command.
//
//   - mount latency against the number of objects, kvinject next to the anchor
//     (go test -bench BenchmarkPublishByObjects output);
//   - Azure calls per rotation interval for 100 volumes, kvinject next to the anchor
//     (go test -bench BenchmarkRotationRound output);
//   - webhook reviews per second against concurrent clients (test/cmd/webhook-load
//     output).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	publish := flag.String("publish", "", "output of go test -bench BenchmarkPublishByObjects")
	rotation := flag.String("rotation", "", "output of go test -bench BenchmarkRotationRound")
	load := flag.String("load", "", "output of test/cmd/webhook-load")
	out := flag.String("out", "docs/img", "directory for the SVG charts")
	flag.Parse()
	if err := run(*publish, *rotation, *load, *out); err != nil {
		fmt.Fprintln(os.Stderr, "benchcharts:", err)
		os.Exit(1)
	}
}

func run(publish, rotation, load, out string) error {
	if publish == "" || rotation == "" || load == "" {
		return fmt.Errorf("give -publish, -rotation and -load (make charts does)")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	charts := []struct {
		in, file string
		draw     func(in, file string) error
	}{
		{publish, "mount-latency.svg", mountLatency},
		{rotation, "rotation-calls.svg", rotationCalls},
		{load, "webhook-reviews.svg", webhookReviews},
	}
	for _, c := range charts {
		if err := c.draw(c.in, filepath.Join(out, c.file)); err != nil {
			return fmt.Errorf("%s: %w", c.in, err)
		}
		fmt.Println(filepath.Join(out, c.file))
	}
	return nil
}
