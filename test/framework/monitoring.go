package framework

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/kvinject/kvinject/internal/chartrender"
	"github.com/kvinject/kvinject/internal/testkit"
)

// The chart's monitoring files, relative to the chart directory.
const (
	RulesFile     = "files/prometheus-rules.yaml"
	DashboardFile = "files/grafana-dashboard.json"
)

// ChartRules parses the chart's alert rules with Prometheus's own rulefmt, which
// validates them as Prometheus would load them (expressions, templates, durations).
func ChartRules() (*rulefmt.RuleGroups, error) {
	root, err := testkit.RepoRoot()
	if err != nil {
		return nil, err
	}
	groups, errs := rulefmt.ParseFile(filepath.Join(root, chartrender.ChartDir, RulesFile), false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s: %v", RulesFile, errs)
	}
	return groups, nil
}

// Dashboard is the part of a Grafana dashboard the tests read.
type Dashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// ChartDashboard decodes the chart's Grafana dashboard.
func ChartDashboard() (*Dashboard, error) {
	root, err := testkit.RepoRoot()
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(root, chartrender.ChartDir, DashboardFile))
	if err != nil {
		return nil, err
	}
	var d Dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", DashboardFile, err)
	}
	return &d, nil
}

// ChartMetrics returns every metric name the chart's alerts and dashboard panels
// query, each with where it is used ("alert X", "panel Y"), parsed with Prometheus's
// PromQL parser.
func ChartMetrics() (map[string][]string, error) {
	used := map[string][]string{}
	add := func(where, expr string) error {
		e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				used[vs.Name] = append(used[vs.Name], where)
			}
			return nil
		})
		return nil
	}
	groups, err := ChartRules()
	if err != nil {
		return nil, err
	}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if err := add("alert "+r.Alert, r.Expr); err != nil {
				return nil, err
			}
		}
	}
	d, err := ChartDashboard()
	if err != nil {
		return nil, err
	}
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			if t.Expr == "" {
				continue
			}
			if err := add("panel "+p.Title, t.Expr); err != nil {
				return nil, err
			}
		}
	}
	return used, nil
}

// MissingMetrics returns the metrics among used whose name starts with one of
// prefixes and that the Prometheus text exposition lacks. A histogram's _bucket,
// _sum and _count series count as its family.
func MissingMetrics(exposition []byte, used map[string][]string, prefixes ...string) ([]string, error) {
	tp := expfmt.NewTextParser(model.UTF8Validation)
	families, err := tp.TextToMetricFamilies(strings.NewReader(string(exposition)))
	if err != nil {
		return nil, err
	}
	var missing []string
	for name, where := range used {
		if !hasPrefix(name, prefixes) {
			continue
		}
		if _, ok := families[name]; ok {
			continue
		}
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if mf, ok := families[base]; ok && base != name && mf.GetType().String() == "HISTOGRAM" {
			continue
		}
		missing = append(missing, fmt.Sprintf("%s (used by %s)", name, strings.Join(where, ", ")))
	}
	sort.Strings(missing)
	return missing, nil
}

func hasPrefix(name string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
