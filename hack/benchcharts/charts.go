package main

import (
	"bufio"
	"fmt"
	"image/color"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/perf/benchfmt"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Colours: kvinject blue, the anchor grey.
var (
	kvinjectColor = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	anchorColor   = color.RGBA{R: 0x88, G: 0x88, B: 0x88, A: 0xff}
)

// benchmarks reads go test -bench output: for each benchmark name (without the
// -GOMAXPROCS suffix), the mean of each unit over its runs.
func benchmarks(file string) (map[string]map[string]float64, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sums := map[string]map[string][]float64{}
	r := benchfmt.NewReader(f, file)
	for r.Scan() {
		res, ok := r.Result().(*benchfmt.Result)
		if !ok {
			continue
		}
		base, parts := res.Name.Parts()
		name := "Benchmark" + string(base) // benchfmt drops the prefix
		for _, p := range parts {
			if !strings.HasPrefix(string(p), "-") { // "-2" is GOMAXPROCS
				name += string(p)
			}
		}
		if sums[name] == nil {
			sums[name] = map[string][]float64{}
		}
		for _, v := range res.Values {
			sums[name][v.Unit] = append(sums[name][v.Unit], v.Value)
		}
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	out := map[string]map[string]float64{}
	for name, units := range sums {
		out[name] = map[string]float64{}
		for unit, vs := range units {
			var s float64
			for _, v := range vs {
				s += v
			}
			out[name][unit] = s / float64(len(vs))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no benchmark results")
	}
	return out, nil
}

var objectsRE = regexp.MustCompile(`/objects=(\d+)$`)

// mountLatency: ms per first publish against objects per volume, both lines.
func mountLatency(in, file string) error {
	res, err := benchmarks(in)
	if err != nil {
		return err
	}
	var ours, anchor plotter.XYs
	for name, units := range res {
		m := objectsRE.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		ours = append(ours, plotter.XY{X: float64(n), Y: units["ms/publish"]})
		anchor = append(anchor, plotter.XY{X: float64(n), Y: units["anchor-ms/publish"]})
	}
	if len(ours) < 2 {
		return fmt.Errorf("want BenchmarkPublishByObjects/objects=N results for 2 or more N, found %d", len(ours))
	}
	sort.Slice(ours, func(i, j int) bool { return ours[i].X < ours[j].X })
	sort.Slice(anchor, func(i, j int) bool { return anchor[i].X < anchor[j].X })
	p := plot.New()
	p.Title.Text = "First mount of a volume, 20 ms per Key Vault request"
	p.X.Label.Text = "objects in the volume"
	p.Y.Label.Text = "ms per mount"
	p.Add(plotter.NewGrid())
	for _, s := range []struct {
		name string
		xys  plotter.XYs
		c    color.Color
	}{{"kvinject (measured)", ours, kvinjectColor}, {"Azure provider (n+4 requests in sequence)", anchor, anchorColor}} {
		l, pts, err := plotter.NewLinePoints(s.xys)
		if err != nil {
			return err
		}
		l.Color, pts.Color = s.c, s.c
		p.Add(l, pts)
		p.Legend.Add(s.name, l, pts)
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Y.Min = 0
	return p.Save(7*vg.Inch, 4*vg.Inch, file)
}

// rotationCalls: Azure requests per rotation interval for 100 volumes, by kind.
func rotationCalls(in, file string) error {
	res, err := benchmarks(in)
	if err != nil {
		return err
	}
	units, ok := res["BenchmarkRotationRound/http1"]
	if !ok {
		return fmt.Errorf("no BenchmarkRotationRound/http1 result")
	}
	ours := units["kv-reads/interval"] + units["kv-challenges/interval"] + units["token-requests/interval"]
	// The anchor sends, per volume of 10 objects, n+4 requests (anchorPerVolume).
	anchor := 100.0 * (10 + 4)
	p := plot.New()
	p.Title.Text = "Azure requests per rotation interval: 100 volumes, 10 objects each"
	p.Y.Label.Text = "requests per interval"
	p.Add(plotter.NewGrid())
	w := vg.Points(60)
	for i, s := range []struct {
		v float64
		c color.Color
	}{{ours, kvinjectColor}, {anchor, anchorColor}} {
		vals := plotter.Values{0, 0}
		vals[i] = s.v
		b, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		b.Color, b.LineStyle.Width = s.c, 0
		p.Add(b)
		labels, err := plotter.NewLabels(plotter.XYLabels{
			XYs:    []plotter.XY{{X: float64(i), Y: s.v}},
			Labels: []string{strconv.FormatFloat(s.v, 'f', 0, 64)},
		})
		if err != nil {
			return err
		}
		p.Add(labels)
	}
	p.NominalX("kvinject", "Azure provider")
	p.Y.Max = anchor * 1.1
	return p.Save(6*vg.Inch, 4*vg.Inch, file)
}

// webhookReviews: reviews per second against concurrent clients, from the load
// tool's table (columns conc, proto, reviews/s, ...).
func webhookReviews(in, file string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	var xys plotter.XYs
	header := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[0] == "conc" && fields[2] == "reviews/s" {
			header = true
			continue
		}
		if !header || len(fields) < 3 {
			continue
		}
		c, err1 := strconv.Atoi(fields[0])
		rate, err2 := strconv.ParseFloat(fields[2], 64)
		if err1 != nil || err2 != nil {
			continue
		}
		xys = append(xys, plotter.XY{X: float64(c), Y: rate})
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(xys) == 0 {
		return fmt.Errorf("no rows under the load tool's header (conc proto reviews/s ...)")
	}
	p := plot.New()
	p.Title.Text = "Webhook: admission reviews per second (HTTPS, 2 cores)"
	p.X.Label.Text = "concurrent clients"
	p.Y.Label.Text = "reviews per second"
	p.Add(plotter.NewGrid())
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	l.Color, pts.Color = kvinjectColor, kvinjectColor
	p.Add(l, pts)
	p.Y.Min = 0
	return p.Save(6*vg.Inch, 4*vg.Inch, file)
}
