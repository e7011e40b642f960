//go:build composerun

// The compose run: docker-compose.yml for real on this machine's Docker
// engine, driven as a user would drive it. It builds images and starts
// two dozen containers (minutes, much CPU), so it is kept out of `make
// test` by its build tag; `make test-compose` runs it.

package compose

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-mesh/portico/e2e/curlflow"
	"github.com/portico-mesh/portico/e2e/hostcmd"
	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

const (
	ingressURL    = "http://127.0.0.1:5000"
	prometheusURL = "http://127.0.0.1:9090"
	consulURL     = "http://127.0.0.1:8500"
	jaegerURL     = "http://127.0.0.1:16686"
	// The compose file's project name (name: portico).
	projectLabel = "com.docker.compose.project=portico"
	// docker-compose.yml's defaults for the bootstrap admin.
	adminEmail    = "admin@portico.local"
	adminPassword = "portico-dev-admin"
)

// published are the host ports the compose file publishes; the run needs
// them free.
var published = []string{"5000", "8500", "15672", "9090", "3000", "16686"}

// runner runs the host commands of the test.
type runner struct{ hostcmd.Runner }

func (r runner) compose(timeout time.Duration, args ...string) string {
	r.T.Helper()
	return r.Run(timeout, "docker", append([]string{"compose"}, args...)...)
}

// TestComposeRun: the engine (started if none runs), the images (pulled or
// built as local stand-ins, mesh/images), `docker compose up -d --build
// --wait`, every container healthy, then the seed's curl flow through the
// ingress on 127.0.0.1:5000, one product write's trace in Jaeger, the
// merged docs, the edge cache and its purge
// by events, Prometheus's targets, one products instance stopped under
// traffic, and `docker compose down -v` leaving nothing behind.
func TestComposeRun(t *testing.T) {
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	r := runner{hostcmd.Runner{T: t, Root: root}}
	for _, p := range published {
		l, err := net.Listen("tcp", "127.0.0.1:"+p)
		if err != nil {
			t.Fatalf("port %s, which docker-compose.yml publishes, is taken (make down? another compose project?): %v", p, err)
		}
		l.Close()
	}

	r.Run(3*time.Minute, ".ci/dockerd.sh", "start")
	t.Cleanup(func() { r.Run(3*time.Minute, ".ci/dockerd.sh", "stop") })
	t.Log(r.Run(40*time.Minute, "mesh/images/build.sh"))

	up := []string{"up", "-d", "--build", "--wait", "--wait-timeout", "900"}
	if _, err := r.Try(time.Minute, "docker", "image", "inspect", grafanaImage(t, root)); err != nil {
		t.Logf("%s is absent (no registry, no local build): the stack runs without Grafana", grafanaImage(t, root))
		// Every other service by name: --scale grafana=0 would still pull it.
		for _, svc := range strings.Fields(r.compose(time.Minute, "config", "--services")) {
			if svc != "grafana" {
				up = append(up, svc)
			}
		}
	}
	downed := false
	t.Cleanup(func() {
		if !downed {
			t.Log(r.compose(5*time.Minute, "logs", "--no-color", "--tail", "40"))
			r.compose(5*time.Minute, "down", "-v", "--remove-orphans")
		}
	})
	start := time.Now()
	if out, err := r.Try(45*time.Minute, "docker", append([]string{"compose"}, up...)...); err != nil {
		t.Fatalf("docker compose %s: %v\n%s\n%s", strings.Join(up, " "), err, out,
			r.compose(time.Minute, "ps", "-a", "--format", "table {{.Service}}\t{{.Status}}"))
	}
	t.Logf("docker compose up -d --build --wait: every container healthy after %v", time.Since(start).Round(time.Second))
	checkContainers(t, r)

	ctx := t.Context()
	c := &curlflow.Client{T: t, BaseURL: ingressURL}
	admin := c.Login(ctx, adminEmail, adminPassword)
	t.Run("seed curl flow", func(t *testing.T) { curlflow.Seed(t, c.With(t), admin) })
	t.Run("trace of a product write", func(t *testing.T) { traceOfProductWrite(t, c.With(t), r, admin) })
	t.Run("docs", func(t *testing.T) { curlflow.Docs(t, c.With(t)) })
	t.Run("cache and purge", func(t *testing.T) { cacheAndPurge(t, c.With(t), r, admin) })
	t.Run("prometheus targets", func(t *testing.T) { prometheusTargets(t) })
	t.Run("products instance stopped under traffic", func(t *testing.T) { stopProductsUnderTraffic(t, c.With(t), r, admin) })

	start = time.Now()
	r.compose(10*time.Minute, "down", "-v", "--remove-orphans")
	downed = true
	t.Logf("docker compose down -v: %v", time.Since(start).Round(time.Second))
	for _, kind := range []string{"container", "network", "volume"} {
		args := []string{kind, "ls", "-q", "--filter", "label=" + projectLabel}
		if kind == "container" {
			args = append(args, "-a")
		}
		if left := strings.TrimSpace(r.Run(time.Minute, "docker", args...)); left != "" {
			t.Errorf("after docker compose down -v, %ss of the project remain: %s", kind, left)
		}
	}
}

// grafanaImage is the Grafana image of images.txt, the one upstream image
// no local stand-in replaces.
func grafanaImage(t *testing.T, root string) string {
	b, err := os.ReadFile(filepath.Join(root, "mesh", "images", "images.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && strings.HasPrefix(f[0], "grafana/") {
			return f[0]
		}
	}
	t.Fatal("images.txt names no grafana image")
	return ""
}

// checkContainers: every long-running container healthy, every one-shot
// exited 0, as `docker compose ps -a` reports them.
func checkContainers(t *testing.T, r runner) {
	t.Helper()
	out := r.compose(time.Minute, "ps", "-a", "--format", "{{.Service}}\t{{.State}}\t{{.Health}}\t{{.ExitCode}}")
	oneShots := map[string]bool{"postgres-init": true, "mesh-config": true}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			t.Fatalf("docker compose ps: %q", line)
		}
		seen++
		svc, state, health, exit := f[0], f[1], f[2], f[3]
		switch {
		case oneShots[svc]:
			if state != "exited" || exit != "0" {
				t.Errorf("%s: %s, exit code %s; want exited 0", svc, state, exit)
			}
		case state != "running" || health != "healthy":
			t.Errorf("%s: %s, %q; want running and healthy", svc, state, health)
		}
	}
	t.Logf("%d containers: the long-running ones healthy, the one-shots done", seen)
}

// traceOfProductWrite: a product written through the ingress is one trace
// in Jaeger, found as README tells a user to find it: the trace id of the
// request's line in the ingress's access log (docker compose logs), then
// GET /api/traces/<id> on the query API the compose file publishes. The
// trace has the ingress's spans, the products sidecar's (proxy-defaults,
// its collector moved to jaeger:4317 by mesh-config), the products
// service's (OTEL_EXPORTER_OTLP_ENDPOINT) and its event's publish and
// consumption, each process exporting its own.
func traceOfProductWrite(t *testing.T, c *curlflow.Client, r runner, token string) {
	agent := fmt.Sprintf("compose-trace-%d", time.Now().UnixNano())
	p := curlflow.DecodeJSON[curlflow.Product](t, c.Expect(http.StatusCreated, http.MethodPost, "/api/products/products", token,
		`{"name": "Traced `+agent+`", "description": "traced by e2e/compose", "price": 9.99, "stock_quantity": 1}`,
		"User-Agent", agent))
	t.Cleanup(func() {
		_, _ = c.Do(context.Background(), http.MethodDelete, fmt.Sprintf("/api/products/products/%d", p.ID), token, "")
	})

	var line map[string]any
	localenvtest.Eventually(t, time.Minute, time.Second, "the ingress's access-log line of the write", func(ctx context.Context) error {
		out, err := r.Try(time.Minute, "docker", "compose", "logs", "--no-color", "--no-log-prefix", "ingress")
		if err != nil {
			return fmt.Errorf("docker compose logs ingress: %w", err)
		}
		for l := range strings.Lines(out) {
			var rec map[string]any
			if strings.Contains(l, agent) && json.Unmarshal([]byte(l), &rec) == nil && rec["user_agent"] == agent {
				line = rec
				return nil
			}
		}
		return errors.New("no line with user agent " + agent)
	})
	traceID, _ := line["trace_id"].(string)
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(traceID) || strings.Trim(traceID, "0") == "" {
		t.Fatalf("the ingress's access-log line has no trace id: %v", line)
	}

	// Each process exports on its own schedule (the SDK's batch delay is
	// five seconds): wait for every hop, parent to child. The write's
	// event joins the trace too: the outbox relay's publish in products,
	// the purge consumer's span in the edge.
	var spans []localenv.TraceSpan
	localenvtest.Eventually(t, 2*time.Minute, time.Second, "trace "+traceID+" in Jaeger", func(ctx context.Context) error {
		var err error
		if spans, err = localenv.ReadTrace(ctx, jaegerURL, traceID); err != nil {
			return err
		}
		return productWriteHops(spans)
	})
	var root *localenv.TraceSpan
	for i := range spans {
		if spans[i].ParentID == "" {
			root = &spans[i]
		}
	}
	if root == nil || root.Service != "ingress" {
		t.Errorf("the trace does not start at the ingress: %v", spans)
	}
	t.Logf("access log trace_id %s: %d spans in Jaeger: %v", traceID, len(spans), spans)
}

// productWriteHops requires, in one trace's spans, the products sidecar's
// span under an ingress span, the products service's span under the
// sidecar's, the relay's publish in products and the edge's consumption.
func productWriteHops(spans []localenv.TraceSpan) error {
	byID := map[string]localenv.TraceSpan{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	var sidecar *localenv.TraceSpan
	for i, s := range spans {
		if s.Service == "mesh-sidecar" && strings.HasPrefix(s.Tags["node_id"], "products-") && byID[s.ParentID].Service == "ingress" {
			sidecar = &spans[i]
		}
	}
	if sidecar == nil {
		return fmt.Errorf("no products sidecar span under an ingress span among %v", spans)
	}
	if !slices.ContainsFunc(spans, func(s localenv.TraceSpan) bool { return s.Service == "products" && s.ParentID == sidecar.SpanID }) {
		return fmt.Errorf("no products span under its sidecar's among %v", spans)
	}
	for _, hop := range [][2]string{{"products", "publish "}, {"edge", "process "}} {
		if !slices.ContainsFunc(spans, func(s localenv.TraceSpan) bool { return s.Service == hop[0] && strings.HasPrefix(s.Operation, hop[1]) }) {
			return fmt.Errorf("no %s span %s… (the event) among %v", hop[0], hop[1], spans)
		}
	}
	return nil
}

// edgeMetric sums the edge's series of name with every label given, read
// in the edge pod through its sidecar's metrics listener (the way
// Prometheus reads it), with the agent container's wget.
func edgeMetric(t *testing.T, r runner, name string, labels ...string) float64 {
	t.Helper()
	out := r.compose(time.Minute, "exec", "-T", "edge-agent", "wget", "-qO-", "http://127.0.0.1:9102/metrics")
	var sum float64
	for _, line := range strings.Split(out, "\n") {
		series, value, ok := strings.Cut(line, " ")
		metric, labelText, _ := strings.Cut(series, "{")
		if !ok || metric != name {
			continue
		}
		match := true
		for _, l := range labels {
			match = match && strings.Contains(labelText, l)
		}
		if match {
			var v float64
			if _, err := fmt.Sscan(value, &v); err != nil {
				t.Fatalf("edge metrics: %q: %v", line, err)
			}
			sum += v
		}
	}
	return sum
}

// cacheAndPurge: a product read is a MISS, then a HIT; after an update the
// edge's purge (an event through RabbitMQ) serves the new data well before
// the cached copy would have expired.
func cacheAndPurge(t *testing.T, c *curlflow.Client, r runner, token string) {
	applied := func() float64 { return edgeMetric(t, r, "edge_purge_events_total", `result="applied"`) }
	before := applied()
	p := curlflow.DecodeJSON[curlflow.Product](t, c.Expect(http.StatusCreated, http.MethodPost, "/api/products/products", token,
		`{"name": "Cached lamp", "price": "19.99"}`))
	// The creation's own event is consumed first, so that it cannot be
	// mistaken for the update's.
	localenvtest.Eventually(t, time.Minute, 200*time.Millisecond, "the creation event applied", func(context.Context) error {
		if n := applied(); n <= before {
			return fmt.Errorf("%v events applied, want more than %v", n, before)
		}
		return nil
	})
	path := fmt.Sprintf("/api/products/products/%d", p.ID)
	if x := c.Expect(http.StatusOK, http.MethodGet, path, token, "").Header.Get("X-Cache"); x != "MISS" {
		t.Fatalf("first read: X-Cache %q, want MISS", x)
	}
	hit := c.Expect(http.StatusOK, http.MethodGet, path, token, "")
	cachedAt := time.Now()
	if x := hit.Header.Get("X-Cache"); x != "HIT" {
		t.Fatalf("second read: X-Cache %q, want HIT", x)
	}
	maxAge := 30 * time.Second // products' default PRODUCTS_CACHE_MAX_AGE
	if cc := hit.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=30") {
		t.Fatalf("Cache-Control %q: the test assumes max-age=30", cc)
	}

	before = applied()
	c.Expect(http.StatusOK, http.MethodPut, path, token, `{"name": "Cached lamp v2"}`)
	var fresh time.Time
	localenvtest.Eventually(t, maxAge, 20*time.Millisecond, "the new name served", func(ctx context.Context) error {
		got, err := c.Do(ctx, http.MethodGet, path, token, "")
		if err != nil {
			return err
		}
		if p := curlflow.DecodeJSON[curlflow.Product](t, got); p.Name != "Cached lamp v2" {
			return fmt.Errorf("still %q (X-Cache %s)", p.Name, got.Header.Get("X-Cache"))
		}
		fresh = time.Now()
		return nil
	})
	if fresh.Sub(cachedAt) >= maxAge {
		t.Fatalf("the new name came %v after the copy was cached: expiry, not a purge", fresh.Sub(cachedAt))
	}
	if n := applied(); n <= before {
		t.Fatalf("the edge applied no event for the update (%v, before %v)", n, before)
	}
	t.Logf("purged: the new name served %v after the cached read", fresh.Sub(cachedAt).Round(time.Millisecond))
}

// prometheusTargets: every scrape target of prometheus.compose.yml is up.
func prometheusTargets(t *testing.T) {
	localenvtest.Eventually(t, 3*time.Minute, 2*time.Second, "every Prometheus target up", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, prometheusURL+"/api/v1/targets?state=active", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var body struct {
			Data struct {
				ActiveTargets []struct {
					Labels    map[string]string `json:"labels"`
					Health    string            `json:"health"`
					LastError string            `json:"lastError"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return err
		}
		var down []string
		for _, tg := range body.Data.ActiveTargets {
			if tg.Health != "up" {
				down = append(down, fmt.Sprintf("%s/%s %s %s", tg.Labels["job"], tg.Labels["instance"], tg.Health, tg.LastError))
			}
		}
		if len(body.Data.ActiveTargets) == 0 || len(down) > 0 {
			return fmt.Errorf("%d targets, not up: %v", len(body.Data.ActiveTargets), down)
		}
		t.Logf("%d targets up", len(body.Data.ActiveTargets))
		return nil
	})
}

// stopProductsUnderTraffic: with requests flowing to the products service,
// products-1 is stopped; Consul then lists only products-2 as passing and,
// once the mesh has caught up, the requests go on succeeding there.
func stopProductsUnderTraffic(t *testing.T, c *curlflow.Client, r runner, token string) {
	ctx, cancel := context.WithCancel(t.Context())
	// ok and failed count every request; streak the successes since the
	// last failure.
	var ok, failed, streak atomic.Int64
	var lastErr atomic.Value
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			// A new name filter each time: a cache MISS, so the request
			// reaches an instance.
			got, err := c.Do(ctx, http.MethodGet, fmt.Sprintf("/api/products/products?limit=1&name=traffic%d", i), token, "")
			switch {
			case ctx.Err() != nil:
			case err == nil && got.Status == http.StatusOK:
				ok.Add(1)
				streak.Add(1)
			default:
				failed.Add(1)
				streak.Store(0)
				lastErr.Store(fmt.Sprint(err, " ", got))
			}
			// 5 a second: under the ingress's limits per caller
			// (edgeconfig's default: 600 a minute per subject).
			time.Sleep(200 * time.Millisecond)
		}
	})
	defer func() { cancel(); wg.Wait() }()

	localenvtest.Eventually(t, 2*time.Minute, 100*time.Millisecond, "traffic flowing", func(context.Context) error {
		if n := streak.Load(); n < 20 {
			return fmt.Errorf("%d requests in a row succeeded (last failure: %v)", n, lastErr.Load())
		}
		return nil
	})
	r.compose(2*time.Minute, "stop", "products-1")
	before := ok.Load()
	localenvtest.Eventually(t, time.Minute, time.Second, "only products-2 passing in Consul", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, consulURL+"/v1/health/service/products?passing=true", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var entries []struct{ Service struct{ ID string } }
		if err := json.NewDecoder(resp.Body).Decode(&entries); err != nil {
			return err
		}
		if len(entries) != 1 || entries[0].Service.ID != "products-2" {
			return fmt.Errorf("passing: %+v", entries)
		}
		return nil
	})
	// The mesh follows Consul within moments: a run of successes, then
	// not one failure while 100 more succeed on products-2 alone.
	localenvtest.Eventually(t, 2*time.Minute, 100*time.Millisecond, "traffic going on", func(context.Context) error {
		if n := streak.Load(); n < 20 {
			return fmt.Errorf("%d requests in a row succeeded (last failure: %v)", n, lastErr.Load())
		}
		return nil
	})
	failedAround := failed.Load()
	okAlone := ok.Load()
	localenvtest.Eventually(t, 2*time.Minute, 100*time.Millisecond, "100 more requests", func(context.Context) error {
		if n := ok.Load() - okAlone; n < 100 {
			return fmt.Errorf("%d succeeded", n)
		}
		return nil
	})
	if f := failed.Load() - failedAround; f > 0 {
		t.Errorf("%d requests failed on products-2 alone; last: %v", f, lastErr.Load())
	}
	t.Logf("requests: %d succeeded before the stop, %d failed around it (last: %v), %d succeeded after",
		before, failedAround, lastErr.Load(), ok.Load()-before)
}
