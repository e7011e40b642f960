package system_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/services/platform/telemetry"
)

// What the dashboards' Grafana variables become in the queries. Grafana
// makes $__rate_interval at least four scrape intervals (1m for `make
// up`'s 15 s); here it is long enough for a rate to still see the load
// while the test waits for the recording rules and queries every panel.
var grafanaVariables = map[string]string{
	"__rate_interval": "5m",
	"__interval":      "15s",
	"__range":         "5m",
}

// TestDashboardPanelsHaveData runs Prometheus scraping every process of the
// system (services, sidecars, edge, control plane, ingress, rate-limit
// service) with the repository's rules, sends a short mixed load through
// the ingress, and then runs every query of every panel of every
// provisioned dashboard against it: each must return at least one series.
// The failure lists every panel that has none.
func TestDashboardPanelsHaveData(t *testing.T) {
	startCtx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	prom, err := sys.stack.StartPrometheus(startCtx, localenv.PrometheusOptions{Targets: sys.scrapeTargets})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := prom.Stop(ctx); err != nil {
			t.Errorf("stop prometheus: %v", err)
		}
	})
	t.Logf("prometheus %s scrapes %d targets (config %s)", prom.URL(), len(sys.scrapeTargets), prom.ConfigPath())

	// Every target answers before the load, so that its counters have a
	// sample from before the load to rate against.
	upQuery := fmt.Sprintf("count(up == 1) == %d", len(sys.scrapeTargets))
	waitForSeries(t, prom, time.Minute, "every target up", upQuery, func() string {
		got, _ := prom.Query(t.Context(), "up == 0")
		return fmt.Sprintf("targets down: %v", got)
	})

	// Twice, with a scrape between: a counter is born at its first
	// increment (a first 429, a first cache hit), and rate() cannot see
	// the increment that created the series, only those after a sample.
	mixedLoad(t)
	first := fmt.Sprintf("%.3f", float64(time.Now().UnixMilli())/1000)
	waitForSeries(t, prom, time.Minute, "a scrape of every target after the first load", "min(timestamp(up)) > "+first, func() string { return "" })
	mixedLoad(t)
	loaded := time.Now()

	// Every target scraped, and the recording rules evaluated, after the
	// load: the panels then show it.
	after := fmt.Sprintf("%.3f", float64(loaded.UnixMilli())/1000)
	waitForSeries(t, prom, time.Minute, "a scrape of every target after the load", "min(timestamp(up)) > "+after, func() string { return "" })
	waitForSeries(t, prom, time.Minute, "the recording rules evaluated after the load",
		"timestamp(ingress:envoy_http_downstream_rq:rate5m) > "+after, func() string { return "" })

	checkExemplarsLinkTraces(t, prom, loaded.Add(-5*time.Minute), time.Now())

	queries := dashboardQueries(t)
	if len(queries) == 0 {
		t.Fatal("no panel queries found in the dashboards")
	}
	// Recording rules are evaluated every 15 s, and a rate needs two
	// scrapes after the load: wait until every panel has data, then list
	// those that never got any. A panel has data when one of its queries
	// returns a series: a panel may pair a common outcome with a rare one
	// (rate-limit checks: ok, error, failed open) that has no series until
	// it happens. Every query must still be one Prometheus accepts.
	var result panelResults
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	_ = localenv.Poll(ctx, 2*time.Second, func(ctx context.Context) error {
		result = runPanelQueries(ctx, prom, queries)
		if len(result.failed) > 0 || len(result.empty) > 0 || len(result.unloaded) > 0 {
			return fmt.Errorf("%d query errors, %d panels without data, %d without the load", len(result.failed), len(result.empty), len(result.unloaded))
		}
		return nil
	})
	for _, q := range result.quiet {
		t.Logf("no series (its panel has others): %s: %s", q, q.expr)
	}
	for _, q := range result.idle {
		t.Logf("series, all 0 or NaN after the load: %s: %s", q, q.expr)
	}
	if len(result.unloaded) > 0 {
		t.Errorf("panels that show none of the load (every value 0 or NaN):\n%s", strings.Join(result.unloaded, "\n"))
	}
	if len(result.failed) > 0 || len(result.empty) > 0 {
		dump := filepath.Join(sys.stack.Path("prometheus"), "series.txt")
		writeSeriesNames(t, prom, dump)
		t.Fatalf("%d panels of %d return no series, %d queries fail (the metric names Prometheus has are in %s):\n%s",
			len(result.empty), result.panels, len(result.failed), dump, strings.Join(append(result.failed, result.empty...), "\n"))
	}
	t.Logf("%d panels (%d queries) of %d dashboards have data; %d queries without series, %d with only 0 or NaN",
		result.panels, len(queries), len(dashboardFiles(t)), len(result.quiet), len(result.idle))
}

// showsLoad are the panels that must show mixedLoad's traffic (a value
// neither 0 nor NaN): what it does is there to be seen on them. The
// rate-limit service's own over-limit counter is not among them: its
// exported values did not move between the two rounds of the load here
// (the ingress's own 429 counters did).
var showsLoad = []string{
	"Portico ingress / Requests by response class",
	"Portico ingress / 429s: global and local limits",
	"Portico ingress / JWT checks",
	"Portico ingress / Latency by route (p99, at the service)",
	"Portico services / Request rate by route",
	"Portico services / 4xx and 5xx by status",
	"Portico mesh / ingress → service",
	"Portico mesh / service → service",
	"Portico mesh / Intention (RBAC) decisions",
	"Portico cache and events / Hit ratio",
	"Portico cache and events / Lookups by outcome",
	"Portico cache and events / Purges",
	"Portico cache and events / Publish rate",
	"Portico cache and events / Consume rate",
}

// panelResults is one pass over every panel query.
type panelResults struct {
	panels int
	// failed are queries Prometheus refused; empty the panels none of
	// whose queries returned a series; unloaded the panels of showsLoad
	// with no value other than 0 or NaN.
	failed, empty, unloaded []string
	// quiet are queries without series in a panel that has data; idle
	// those whose every value is 0 or NaN.
	quiet, idle []panelQuery
}

func runPanelQueries(ctx context.Context, prom *localenv.Prometheus, queries []panelQuery) panelResults {
	var r panelResults
	series := map[string]int{}
	shown := map[string]bool{}
	var order []string
	for _, q := range queries {
		key := q.dashboard + " / " + q.panel
		if _, ok := series[key]; !ok {
			order = append(order, key)
			series[key] = 0
		}
		got, err := prom.Query(ctx, q.expr)
		if err != nil {
			r.failed = append(r.failed, fmt.Sprintf("%s: %v", q, err))
			continue
		}
		series[key] += len(got)
		if len(got) == 0 {
			r.quiet = append(r.quiet, q)
			continue
		}
		active := false
		for _, s := range got {
			if s.Value != 0 && !math.IsNaN(s.Value) {
				active = true
			}
		}
		if !active {
			r.idle = append(r.idle, q)
		} else {
			shown[key] = true
		}
	}
	r.panels = len(order)
	for _, key := range order {
		if series[key] == 0 {
			r.empty = append(r.empty, key)
		}
	}
	for _, key := range showsLoad {
		if _, ok := series[key]; !ok {
			r.unloaded = append(r.unloaded, key+" (no such panel)")
		} else if !shown[key] {
			r.unloaded = append(r.unloaded, key)
		}
	}
	return r
}

// mixedLoad is the traffic every panel needs: logins (one refused for its
// password, then enough to be limited: 429), reads of both services, a
// JWT the ingress refuses, a product written, read twice (a cache miss
// then a hit), and updated (its event purges the cached read).
func mixedLoad(t *testing.T) {
	t.Helper()
	// The login limit counts per client address: a client of its own on
	// another loopback address has its own, and leaves the other tests'
	// budget alone.
	from := fromAddress(t)
	login := func(password string) reply {
		body := fmt.Sprintf(`{"email": %q, "password": %q}`, sys.alice.Email, password)
		r, err := sendFrom(t.Context(), from, request{method: http.MethodPost, path: "/api/users/login", body: body})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := login(sys.alice.Password); r.status != http.StatusOK {
		t.Fatalf("login: %s", r)
	}
	if r := login("wrong-" + randomHex(4)); r.status != http.StatusUnauthorized {
		t.Fatalf("login with a wrong password: %s, want 401", r)
	}
	limited := false
	for range 20 {
		if r := login(sys.alice.Password); r.status == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("20 logins in a row from one address were never limited (429)")
	}

	expect(t, http.StatusOK, request{method: http.MethodGet, path: "/api/users/users?limit=5", token: sys.admin.Token})
	expect(t, http.StatusOK, request{method: http.MethodGet, path: "/api/products/products?limit=5", token: sys.alice.Token})
	expect(t, http.StatusNotFound, request{method: http.MethodGet, path: productPath(1 << 40), token: sys.alice.Token})
	expect(t, http.StatusUnauthorized, request{method: http.MethodGet, path: "/api/users/users?limit=1", token: "not-a-jwt"})

	before := appliedPurges(t)
	p, _ := createProduct(t, sys.alice, "Dashboards "+randomHex(4))
	waitPurgesAfter(t, before, "the creation event to be consumed")
	item := request{method: http.MethodGet, path: productPath(p.ID), token: sys.alice.Token}
	if miss := expect(t, http.StatusOK, item); miss.xcache() != "MISS" {
		t.Errorf("first read: X-Cache %q, want MISS", miss.xcache())
	}
	hit := expect(t, http.StatusOK, item)
	if hit.xcache() != "HIT" {
		t.Errorf("second read: X-Cache %q, want HIT", hit.xcache())
	}
	purgedBefore := edgeMetric(t, "edge_cache_purges_total")
	before = appliedPurges(t)
	expect(t, http.StatusOK, request{method: http.MethodPut, path: productPath(p.ID), token: sys.alice.Token,
		header: map[string]string{"If-Match": hit.header.Get("ETag")}, body: `{"name": "Dashboards v2", "price": "29.99"}`})
	waitPurgesAfter(t, before, "the update event to be consumed")
	if purged := edgeMetric(t, "edge_cache_purges_total"); purged <= purgedBefore {
		t.Errorf("the update purged no cached key (edge_cache_purges_total %v, before %v)", purged, purgedBefore)
	}
}

// fromAddress is a random loopback address other than 127.0.0.1.
func fromAddress(t *testing.T) net.IP {
	t.Helper()
	return net.IPv4(127, 0, byte(1+rand.IntN(250)), byte(2+rand.IntN(250)))
}

// sendFrom sends r through the ingress from the local address ip.
func sendFrom(ctx context.Context, ip net.IP, r request) (reply, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := sys.httpRequest(ctx, r)
	if err != nil {
		return reply{}, err
	}
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: dialer.DialContext, DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s from %s: %w", r.method, r.path, ip, err)
	}
	defer resp.Body.Close()
	var body json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return reply{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// waitForSeries waits until expr returns a series, or fails with why().
func waitForSeries(t *testing.T, prom *localenv.Prometheus, within time.Duration, what, expr string, why func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	err := localenv.Poll(ctx, 500*time.Millisecond, func(ctx context.Context) error {
		got, err := prom.Query(ctx, expr)
		if err != nil {
			return localenv.StopPolling(err)
		}
		if len(got) == 0 {
			return fmt.Errorf("no series for %s", expr)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v; %s", what, err, why())
	}
}

// panelQuery is one query of one panel, its variables substituted.
type panelQuery struct {
	dashboard, panel, refID, expr string
}

func (p panelQuery) String() string {
	return fmt.Sprintf("%s / %s (%s)", p.dashboard, p.panel, p.refID)
}

func dashboardFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(sys.stack.Root(), "observability", "grafana", "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in observability/grafana/dashboards: %v", err)
	}
	return files
}

// grafanaVariable matches $name, ${name} and ${name:format}.
var grafanaVariable = regexp.MustCompile(`\$\{([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-z]+)?\}|\$([a-zA-Z_][a-zA-Z0-9_]*)`)

// dashboardQueries reads every panel query (rows' panels included) and
// substitutes the dashboard's template variables with their "All" value
// (or their current value) and Grafana's built-in ones.
func dashboardQueries(t *testing.T) []panelQuery {
	t.Helper()
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var out []panelQuery
	for _, file := range dashboardFiles(t) {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Title      string            `json:"title"`
			Panels     []json.RawMessage `json:"panels"`
			Templating struct {
				List []struct {
					Name     string `json:"name"`
					AllValue string `json:"allValue"`
					Current  struct {
						Value any `json:"value"`
					} `json:"current"`
				} `json:"list"`
			} `json:"templating"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		vars := map[string]string{}
		for k, v := range grafanaVariables {
			vars[k] = v
		}
		for _, v := range d.Templating.List {
			value := v.AllValue
			if s, ok := v.Current.Value.(string); ok && s != "" && s != "$__all" {
				value = s
			}
			if value == "" {
				value = ".+"
			}
			vars[v.Name] = value
		}
		var walk func(raw []json.RawMessage)
		walk = func(raw []json.RawMessage) {
			for _, r := range raw {
				var p panel
				if err := json.Unmarshal(r, &p); err != nil {
					t.Fatalf("%s: %v", file, err)
				}
				walk(p.Panels)
				for _, q := range p.Targets {
					expr := grafanaVariable.ReplaceAllStringFunc(q.Expr, func(m string) string {
						sub := grafanaVariable.FindStringSubmatch(m)
						name := sub[1] + sub[2]
						v, ok := vars[name]
						if !ok {
							t.Errorf("%s / %s: unknown variable %s in %s", d.Title, p.Title, m, q.Expr)
						}
						return v
					})
					out = append(out, panelQuery{dashboard: d.Title, panel: p.Title, refID: q.RefID, expr: expr})
				}
			}
		}
		walk(d.Panels)
	}
	return out
}

// writeSeriesNames writes every metric name Prometheus has, with the jobs
// that expose it, for a failure's reader.
func writeSeriesNames(t *testing.T, prom *localenv.Prometheus, path string) {
	t.Helper()
	got, err := prom.Query(t.Context(), `count by (__name__, job) ({__name__=~".+"})`)
	if err != nil {
		t.Logf("list series: %v", err)
		return
	}
	lines := make([]string, 0, len(got))
	for _, s := range got {
		lines = append(lines, s.Metric["__name__"]+" "+s.Metric["job"])
	}
	sort.Strings(lines)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Logf("write %s: %v", path, err)
	}
}

// checkExemplarsLinkTraces: the services' latency histogram carries trace
// ids as exemplars (the stack traces every request), and the trace of one
// is in Jaeger: a latency bucket in Grafana links to a real trace.
func checkExemplarsLinkTraces(t *testing.T, prom *localenv.Prometheus, start, end time.Time) {
	t.Helper()
	exemplars, err := prom.Exemplars(t.Context(), "http_request_duration_seconds_bucket", start, end)
	if err != nil {
		t.Fatal(err)
	}
	var traceID string
	for _, e := range exemplars {
		if id := e.Labels[telemetry.ExemplarTraceID]; id != "" {
			traceID = id
			break
		}
	}
	if traceID == "" {
		t.Fatalf("no exemplar with a %s label on http_request_duration_seconds_bucket among %d exemplars", telemetry.ExemplarTraceID, len(exemplars))
	}
	waitTrace(t, traceID, func(tr trace) error {
		if len(tr) == 0 {
			return errors.New("no spans yet")
		}
		return nil
	})
	t.Logf("%d exemplars on the services' latency buckets; trace %s of one is in Jaeger", len(exemplars), traceID)
}
