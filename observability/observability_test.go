// Package observability holds the Prometheus configuration, rules and
// Grafana provisioning for Portico; this test validates them offline with
// promtool (Debian package prometheus, installed by .ci/deps.sh).
package observability

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

const (
	promConfig     = "prometheus/prometheus.yml"
	rulesGlob      = "prometheus/rules/*.yml"
	rulesTests     = "prometheus/tests/alerts_test.yml"
	datasourceFile = "grafana/provisioning/datasources/prometheus.yml"
	dashboardsGlob = "grafana/dashboards/*.json"
	envoyNamesFile = "prometheus/tests/envoy_metric_names.txt"
	// The rate-limit service's own names, as envoy_metric_names.txt lists
	// Envoy's.
	ratelimitNamesFile = "prometheus/tests/ratelimit_metric_names.txt"
)

// promtool finds promtool on PATH or at Debian's path, and fails the test
// (never skips) when it is missing.
func promtool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/promtool"); err == nil {
		return "/usr/bin/promtool"
	}
	t.Fatal("promtool not found on PATH nor at /usr/bin/promtool: run `make deps` " +
		"(.ci/deps.sh installs Debian's prometheus package, which provides it)")
	return ""
}

func runPromtool(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func glob(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no files match %s", pattern)
	}
	return files
}

// TestPrometheusConfig checks the config with promtool (which also loads
// its rule files) and that every component of `make up` is scraped, once,
// with a readable instance label.
func TestPrometheusConfig(t *testing.T) {
	out := runPromtool(t, "check", "config", promConfig)
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check config: no SUCCESS in\n%s", out)
	}

	cfg := read(t, promConfig)
	// mesh/cmd/devstack/topology.go and ingress.go.
	want := map[string]string{
		"8081": "users", "8082": "products", "8083": "products", "8090": "edge",
		"18001": "controlplane", "19100": "ingress",
		"19081": "sidecar", "19082": "sidecar", "19083": "sidecar", "19090": "sidecar",
		"8500": "consul", "18084": "ratelimit",
	}
	job := ""
	got := map[string]string{}
	instances := map[string]bool{}
	jobRe := regexp.MustCompile(`^\s*- job_name:\s*(\S+)`)
	targetRe := regexp.MustCompile(`^\s*- targets:\s*\["127\.0\.0\.1:(\d+)"\]`)
	instRe := regexp.MustCompile(`^\s*labels:\s*\{\s*instance:\s*([a-z0-9-]+)\s*,`)
	lastTarget := ""
	for line := range strings.SplitSeq(cfg, "\n") {
		if m := jobRe.FindStringSubmatch(line); m != nil {
			job = m[1]
		}
		if m := targetRe.FindStringSubmatch(line); m != nil {
			if _, dup := got[m[1]]; dup {
				t.Errorf("port %s scraped twice", m[1])
			}
			got[m[1]] = job
			lastTarget = m[1]
		}
		if m := instRe.FindStringSubmatch(line); m != nil {
			if lastTarget == "" {
				t.Errorf("instance label %q without a target", m[1])
			}
			if instances[m[1]] {
				t.Errorf("instance label %q used twice", m[1])
			}
			instances[m[1]] = true
			lastTarget = ""
		}
	}
	for port, j := range want {
		if got[port] != j {
			t.Errorf("127.0.0.1:%s: scraped by job %q, want %q", port, got[port], j)
		}
	}
	for port := range got {
		if _, ok := want[port]; !ok {
			t.Errorf("127.0.0.1:%s is scraped but is not a devstack component", port)
		}
	}
	if len(instances) != len(want) {
		t.Errorf("%d instance labels for %d targets: every target needs one", len(instances), len(want))
	}
}

func TestRulesCheck(t *testing.T) {
	files := glob(t, rulesGlob)
	out := runPromtool(t, append([]string{"check", "rules"}, files...)...)
	if strings.Count(out, "SUCCESS") != len(files) {
		t.Fatalf("promtool check rules:\n%s", out)
	}
}

// TestRulesUnit runs the rule unit tests, after making sure they still
// prove something: at least two alerts expected to fire and at least one
// case where an alert is expected not to.
func TestRulesUnit(t *testing.T) {
	src := read(t, rulesTests)
	firing := map[string]bool{}
	silent := 0
	var current string
	nameRe := regexp.MustCompile(`^\s*alertname:\s*(\S+)`)
	expRe := regexp.MustCompile(`^\s*exp_alerts:\s*(\S*)`)
	for line := range strings.SplitSeq(src, "\n") {
		if m := nameRe.FindStringSubmatch(line); m != nil {
			current = m[1]
		}
		if m := expRe.FindStringSubmatch(line); m != nil {
			if m[1] == "[]" {
				silent++
			} else {
				firing[current] = true
			}
		}
	}
	if len(firing) < 2 || silent < 1 {
		t.Fatalf("%s: %d alerts expected to fire (%v) and %d expected silent; want >= 2 and >= 1",
			rulesTests, len(firing), firing, silent)
	}
	alerts := read(t, "prometheus/rules/alerts.yml")
	for name := range firing {
		if !strings.Contains(alerts, "- alert: "+name+"\n") {
			t.Errorf("%s tests alert %s, which rules/alerts.yml does not define", rulesTests, name)
		}
	}
	out := runPromtool(t, "test", "rules", rulesTests)
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules: no SUCCESS in\n%s", out)
	}
}

type dashboard struct {
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	GridPos    *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // collapsed rows
}

// TestDashboards checks every dashboard's structure and that its queries
// only use series that exist: recording rules, metrics the Go code defines,
// Prometheus's own `up`, and the Envoy and rate-limit service names captured
// from the real processes. That every query returns data is
// e2e/system's TestDashboardPanelsHaveData.
func TestDashboards(t *testing.T) {
	dsUID := regexp.MustCompile(`(?m)^\s*uid:\s*(\S+)\s*$`).FindStringSubmatch(read(t, datasourceFile))
	if dsUID == nil {
		t.Fatalf("%s: no datasource uid", datasourceFile)
	}
	known := knownMetrics(t)
	addExternalMetrics(t, known)
	titles := map[string]bool{}
	uids := map[string]bool{}
	for _, file := range glob(t, dashboardsGlob) {
		var d dashboard
		dec := json.NewDecoder(bytes.NewReader([]byte(read(t, file))))
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: uid and title are required", file)
		}
		if titles[d.Title] || uids[d.UID] {
			t.Errorf("%s: uid %s or title %q used by another dashboard", file, d.UID, d.Title)
		}
		titles[d.Title] = true
		uids[d.UID] = true
		ids := map[int]bool{}
		queries := 0
		var check func(ps []panel)
		check = func(ps []panel) {
			for _, p := range ps {
				where := file + ": panel " + p.Title
				if p.ID <= 0 || ids[p.ID] {
					t.Errorf("%s: id %d missing or not unique", where, p.ID)
				}
				ids[p.ID] = true
				if p.Title == "" || p.Type == "" || p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 {
					t.Errorf("%s: needs a title, a type and a gridPos", where)
				}
				check(p.Panels)
				if p.Type == "row" {
					continue
				}
				if p.Datasource == nil || p.Datasource.UID != dsUID[1] || p.Datasource.Type != "prometheus" {
					t.Errorf("%s: datasource %+v, want prometheus uid %s", where, p.Datasource, dsUID[1])
				}
				if len(p.Targets) == 0 {
					t.Errorf("%s: no queries", where)
				}
				refs := map[string]bool{}
				for _, q := range p.Targets {
					queries++
					if q.RefID == "" || refs[q.RefID] {
						t.Errorf("%s: refId %q missing or repeated", where, q.RefID)
					}
					refs[q.RefID] = true
					if q.Datasource != nil && q.Datasource.UID != dsUID[1] {
						t.Errorf("%s: query %s: datasource uid %s, want %s", where, q.RefID, q.Datasource.UID, dsUID[1])
					}
					names := metricNames(q.Expr)
					if len(names) == 0 {
						t.Errorf("%s: query %q uses no metric", where, q.Expr)
					}
					for _, n := range names {
						if !known[n] {
							t.Errorf("%s: query %q: metric %s is not a recording rule, not defined in the Go sources, not in %s or %s", where, q.Expr, n, envoyNamesFile, ratelimitNamesFile)
						}
					}
				}
			}
		}
		check(d.Panels)
		if queries == 0 {
			t.Errorf("%s: no queries", file)
		}
	}
	if !titles["Portico overview"] {
		t.Errorf("no dashboard titled %q", "Portico overview")
	}
}

// TestRuleMetricsExist keeps the rules honest the same way: every metric a
// rule reads is a recording rule, a Go-defined metric, `up`, or an Envoy
// stat listed in prometheus/tests/envoy_metric_names.txt (captured from a
// real Envoy of the pinned version).
func TestRuleMetricsExist(t *testing.T) {
	known := knownMetrics(t)
	addExternalMetrics(t, known)
	for _, file := range glob(t, rulesGlob) {
		src := read(t, file)
		exprs := blockExprs(src)
		if len(exprs) == 0 {
			t.Fatalf("%s: no expressions found (the test expects `expr: |` blocks)", file)
		}
		if n := strings.Count(src, "expr:"); n != len(exprs) {
			t.Fatalf("%s: %d expr: fields but %d `expr: |` blocks; write every expression as a block", file, n, len(exprs))
		}
		for _, e := range exprs {
			for _, n := range metricNames(e) {
				if !known[n] {
					t.Errorf("%s: %q: metric %s is not a recording rule, not defined in the Go sources, not in %s", file, strings.TrimSpace(e), n, envoyNamesFile)
				}
			}
		}
	}
}

// addExternalMetrics adds the names of envoy_metric_names.txt and
// ratelimit_metric_names.txt, with the series suffixes of a histogram.
func addExternalMetrics(t *testing.T, known map[string]bool) {
	t.Helper()
	for file, least := range map[string]int{envoyNamesFile: 100, ratelimitNamesFile: 5} {
		n := 0
		for line := range strings.SplitSeq(read(t, file), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				for _, s := range []string{"", "_bucket", "_count", "_sum"} {
					known[line+s] = true
				}
				n++
			}
		}
		if n < least {
			t.Fatalf("%s: only %d names", file, n)
		}
	}
}

// blockExprs returns the bodies of the `expr: |` block scalars of a rules
// file: the lines after it indented deeper than the key.
func blockExprs(src string) []string {
	var exprs []string
	lines := strings.Split(src, "\n")
	indentOf := func(l string) int { return len(l) - len(strings.TrimLeft(l, " ")) }
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "expr: |" {
			continue
		}
		key := indentOf(lines[i])
		var body []string
		for i+1 < len(lines) && (strings.TrimSpace(lines[i+1]) == "" || indentOf(lines[i+1]) > key) {
			i++
			body = append(body, lines[i])
		}
		exprs = append(exprs, strings.Join(body, "\n"))
	}
	return exprs
}

// knownMetrics: recording rule names, `up`, and every metric name the Go
// sources register (Name: "..." in prometheus.*Opts), with the histogram
// series suffixes.
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	known := map[string]bool{"up": true}
	recRe := regexp.MustCompile(`(?m)^\s*- record:\s*(\S+)`)
	for _, file := range glob(t, rulesGlob) {
		for _, m := range recRe.FindAllStringSubmatch(read(t, file), -1) {
			known[m[1]] = true
		}
	}
	nameRe := regexp.MustCompile(`Name:\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"`)
	root := ".."
	var goMetrics []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".cache", ".run", "node_modules", "vendor", "bin":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !bytes.Contains(b, []byte("prometheus")) {
			return nil
		}
		for _, m := range nameRe.FindAllSubmatch(b, -1) {
			goMetrics = append(goMetrics, string(m[1]))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"http_request_duration_seconds", "outbox_backlog", "edge_cache_hits_total", "controlplane_config_rejected_total"} {
		if !slices.Contains(goMetrics, n) {
			t.Fatalf("metric %s not found in the Go sources: the scan is broken", n)
		}
	}
	for _, n := range goMetrics {
		known[n] = true
		for _, s := range []string{"_bucket", "_count", "_sum"} {
			known[n+s] = true
		}
	}
	return known
}

var (
	promqlNameMatch = regexp.MustCompile(`__name__\s*=~?\s*"([a-zA-Z0-9_:|]+)"`)
	promqlStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promqlMatchers  = regexp.MustCompile(`\{[^}]*\}`)
	promqlRanges    = regexp.MustCompile(`\[[^\]]*\]`)
	promqlGrouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlIdent     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promqlNotMetric = map[string]bool{
		"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"inf": true, "nan": true, "Inf": true, "NaN": true,
	}
)

// metricNames extracts the metric names of a PromQL expression: label
// matchers, strings, ranges and grouping clauses are removed; identifiers
// followed by "(" are functions or aggregations.
func metricNames(expr string) []string {
	seen := map[string]bool{}
	// {__name__=~"a|b"} selects the metrics a and b by name.
	for _, m := range promqlNameMatch.FindAllStringSubmatch(expr, -1) {
		for n := range strings.SplitSeq(m[1], "|") {
			seen[n] = true
		}
	}
	s := promqlStrings.ReplaceAllString(expr, `""`)
	s = promqlMatchers.ReplaceAllString(s, " ")
	s = promqlRanges.ReplaceAllString(s, " ")
	s = promqlGrouping.ReplaceAllString(s, " ")
	for _, loc := range promqlIdent.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		if loc[0] > 0 && (s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9' || s[loc[0]-1] == '.') {
			continue // the unit or exponent of a number: 5m, 1e3
		}
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || promqlNotMetric[name] {
			continue
		}
		seen[name] = true
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string]string{
		`sum by (job) (rate(http_requests_total{route!~"/a|/b"}[5m]))`:                    "http_requests_total",
		`topk(10, a:b:c) > 0.5 and on (service) x_total offset 5m`:                        "a:b:c x_total",
		"histogram_quantile(0.99, sum by (le) (rate(edge_purge_lag_seconds_bucket[5m])))": "edge_purge_lag_seconds_bucket",
		`up == 0`: "up",
		`0 * group by (u) ({__name__=~"a_total|b_total"})`:                                     "a_total b_total",
		`histogram_quantile(0.99, sum by (le) (rate(x_bucket{job="$job"}[$__rate_interval])))`: "x_bucket",
	} {
		if got := strings.Join(metricNames(expr), " "); got != want {
			t.Errorf("metricNames(%q) = %q, want %q", expr, got, want)
		}
	}
}
