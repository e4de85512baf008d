package k8s

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	promql "github.com/prometheus/prometheus/promql/parser"
)

// metrics are the xdpipe_ metrics the code exports: each name's labels,
// and the reasons xdpipe_drops_total counts.
type metrics struct {
	labels  map[string][]string
	reasons []string
}

// exported reads them out of xdpipe's source: every desc("xdpipe_...",
// help, labels...), NewCounterDesc("xdpipe_...", help, labels...) (a
// stage's counter, which the Collector labels queue, stage and index
// before its own) and prometheus.NewDesc("xdpipe_...", help,
// []string{labels}, ...) call, and the last argument of every call that
// emits mDrops. The code is the one list; docs and alerts are checked
// against it.
func exported(t *testing.T) metrics {
	t.Helper()
	m := metrics{labels: map[string][]string{}}
	str := func(e ast.Expr) (string, bool) {
		lit, ok := e.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(lit.Value)
		return s, err == nil
	}
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && (d.Name() == "deploy" || d.Name() == "hack" || strings.HasPrefix(d.Name(), ".")) && path != root:
			return filepath.SkipDir
		case d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go"):
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) < 2 {
				return true
			}
			if name, ok := str(call.Args[0]); ok && strings.HasPrefix(name, "xdpipe_") {
				var ls []string
				switch fun := call.Fun.(type) {
				case *ast.Ident:
					switch fun.Name {
					case "desc": // pipeline's desc(name, help, labels...)
					case "NewCounterDesc": // a stage's counter: the Collector's labels first
						ls = []string{"queue", "stage", "index"}
					default:
						return true
					}
					for _, a := range call.Args[2:] {
						if l, ok := str(a); ok {
							ls = append(ls, l)
						}
					}
				case *ast.SelectorExpr: // prometheus.NewDesc(name, help, []string{...}, constLabels)
					if fun.Sel.Name != "NewDesc" || len(call.Args) < 3 {
						return true
					}
					if cl, ok := call.Args[2].(*ast.CompositeLit); ok {
						for _, a := range cl.Elts {
							if l, ok := str(a); ok {
								ls = append(ls, l)
							}
						}
					}
				default:
					return true
				}
				m.labels[name] = ls
			}
			for _, a := range call.Args {
				if id, ok := a.(*ast.Ident); ok && id.Name == "mDrops" {
					if r, ok := str(call.Args[len(call.Args)-1]); ok && !slices.Contains(m.reasons, r) {
						m.reasons = append(m.reasons, r)
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Known fixed points: if these are not found, the scan is broken,
	// not the code.
	if !slices.Equal(m.labels["xdpipe_drops_total"], []string{"iface", "queue", "reason"}) || !slices.Contains(m.reasons, "xsk_rx_ring_full") ||
		m.labels["xdpipe_steer_rule_hits_total"] == nil {
		t.Fatalf("the source scan found %d metrics %v, drop reasons %v: it no longer reads the code", len(m.labels), slices.Sorted(maps.Keys(m.labels)), m.reasons)
	}
	return m
}

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = []string{"instance", "job"}

// TestAlertRulesAreValidAndNameRealMetrics: deploy/prometheus/alerts.yaml
// passes Prometheus's own rule file checks (strict YAML, PromQL, templates:
// what `promtool check rules` runs), and every xdpipe metric it selects,
// every label it matches or groups by and every drop reason it names
// exists in the code.
func TestAlertRulesAreValidAndNameRealMetrics(t *testing.T) {
	const file = "../prometheus/alerts.yaml"
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := promql.NewParser(promql.Options{})
	groups, errs := rulefmt.Parse(b, false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("%s: %v", file, errs)
	}
	m := exported(t)
	alerts := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			expr, err := p.ParseExpr(r.Expr)
			if err != nil {
				t.Fatalf("%s: %v", r.Alert, err)
			}
			checkExpr(t, r.Alert, expr, m)
		}
	}
	if alerts == 0 {
		t.Fatalf("%s: no alerts", file)
	}
}

// checkExpr checks the metrics, labels and reasons expr uses.
func checkExpr(t *testing.T, alert string, expr promql.Expr, m metrics) {
	t.Helper()
	known := slices.Clone(targetLabels)
	promql.Inspect(expr, func(n promql.Node, _ []promql.Node) error {
		vs, ok := n.(*promql.VectorSelector)
		if !ok || !strings.HasPrefix(vs.Name, "xdpipe_") {
			return nil
		}
		ls, ok := m.labels[vs.Name]
		if !ok {
			t.Errorf("%s: no metric %s in the code", alert, vs.Name)
			return nil
		}
		known = append(known, ls...)
		for _, lm := range vs.LabelMatchers {
			if lm.Name == model.MetricNameLabel {
				continue
			}
			if !slices.Contains(ls, lm.Name) && !slices.Contains(targetLabels, lm.Name) {
				t.Errorf("%s: %s has no label %s (labels: %v)", alert, vs.Name, lm.Name, ls)
			}
			if vs.Name == "xdpipe_drops_total" && lm.Name == "reason" && lm.Type != labels.MatchRegexp && lm.Type != labels.MatchNotRegexp &&
				!slices.Contains(m.reasons, lm.Value) {
				t.Errorf("%s: no drop reason %q (reasons: %v)", alert, lm.Value, m.reasons)
			}
		}
		return nil
	})
	promql.Inspect(expr, func(n promql.Node, _ []promql.Node) error {
		if ag, ok := n.(*promql.AggregateExpr); ok {
			for _, l := range ag.Grouping {
				if !slices.Contains(known, l) {
					t.Errorf("%s: groups by %s, a label none of its metrics has", alert, l)
				}
			}
		}
		return nil
	})
}

// TestFleetDocsNameRealMetrics: the README's "Deploying on a fleet"
// section names only metrics and drop reasons that exist.
func TestFleetDocsNameRealMetrics(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## Deploying on a fleet\n")
	if !ok {
		t.Fatal("README.md has no section Deploying on a fleet")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	m := exported(t)
	names := regexp.MustCompile(`xdpipe_[a-z_]+`).FindAllString(sec, -1)
	if len(names) < 5 {
		t.Fatalf("the section names %d metrics: %v", len(names), names)
	}
	for _, n := range names {
		if _, ok := m.labels[n]; !ok {
			t.Errorf("README names metric %s: not in the code", n)
		}
	}
	for _, r := range regexp.MustCompile(`reason="([a-z_]+)"`).FindAllStringSubmatch(sec, -1) {
		if !slices.Contains(m.reasons, r[1]) {
			t.Errorf("README names drop reason %s: not in the code (%v)", r[1], m.reasons)
		}
	}
}
