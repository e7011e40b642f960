package ingress_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/edge/controlplane/xdsserver"
	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

// waitServing waits until each instance has answered through the ingress.
func waitServing(t *testing.T, tok string, instances ...*upstream) {
	t.Helper()
	localenvtest.Eventually(t, 15*time.Second, 50*time.Millisecond, "every instance serves", func(context.Context) error {
		for _, u := range instances {
			before := u.requests.Load()
			for range 10 {
				get(t, "/api/products/products", bearer(tok))
			}
			if u.requests.Load() == before {
				return fmt.Errorf("%s got no request (%s)", u.ID, sidecarHealth(u))
			}
		}
		return nil
	})
}

// sidecarHealth says how Consul sees u's sidecar, the entry the ingress
// follows, for a failure message.
func sidecarHealth(u *upstream) string {
	entries, _, err := env.consulAPI.Health().Connect(u.Service, "", false, nil)
	if err != nil {
		return fmt.Sprintf("consul: %v", err)
	}
	for _, e := range entries {
		if e.Service.Port == u.SidecarPort {
			var checks []string
			for _, c := range e.Checks {
				checks = append(checks, fmt.Sprintf("%s %s %q", c.CheckID, c.Status, c.Output))
			}
			return "sidecar checks: " + strings.Join(checks, "; ")
		}
	}
	return "sidecar not in Consul's Connect health"
}

// envoyStat reads one counter from the ingress's admin interface.
func envoyStat(t *testing.T, name string) int {
	t.Helper()
	resp, err := http.Get(env.ingress.AdminURL() + "/stats?filter=^" + name + "$")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	_, value, ok := strings.Cut(strings.TrimSpace(string(b)), ": ")
	if !ok {
		return 0
	}
	n, _ := strconv.Atoi(value)
	return n
}

// TestOutlierEjection: with one of two instances answering 500, it is
// ejected and clients see at least 99% success.
func TestOutlierEjection(t *testing.T) {
	tok := validToken(t)
	good, bad := startUpstream(t, "products"), startUpstream(t, "products")
	waitServing(t, tok, good, bad)
	bad.fail.Store(true)
	const total = 1000
	ok := 0
	for range total {
		if r := get(t, "/api/products/products", bearer(tok)); r.Status == http.StatusOK {
			ok++
		}
	}
	rate := float64(ok) / total
	t.Logf("success %.2f%% with one of two instances failing; failing instance got %d requests; ejections %d",
		100*rate, bad.requests.Load(), envoyStat(t, "cluster.products.outlier_detection.ejections_enforced_total"))
	if rate < 0.99 {
		t.Fatalf("success rate %.4f, want at least 0.99", rate)
	}
}

// TestRetryPastFailingInstance: an idempotent GET that meets an instance
// whose service is gone (its sidecar answers 503) is retried on another
// instance, and the client never notices.
func TestRetryPastFailingInstance(t *testing.T) {
	tok := validToken(t)
	good, gone := startUpstream(t, "products"), startUpstream(t, "products")
	waitServing(t, tok, good, gone)
	_ = gone.server.Close() // the sidecar stays up and healthy in Consul
	retriesBefore := envoyStat(t, "cluster.products.upstream_rq_retry")
	for i := range 20 {
		if r := get(t, "/api/products/products", bearer(tok)); r.Status != http.StatusOK {
			t.Fatalf("request %d: status %d: %s", i, r.Status, r.Body)
		}
	}
	if retries := envoyStat(t, "cluster.products.upstream_rq_retry") - retriesBefore; retries == 0 {
		t.Fatal("no request was retried: the failing instance was never tried")
	}
}

// TestNewInstanceServesWithinASecond: once a new instance is healthy in
// Consul, the ingress sends it traffic within a second; while it is
// critical, it gets none.
func TestNewInstanceServesWithinASecond(t *testing.T) {
	tok := validToken(t)
	first := startUpstream(t, "products")
	waitServing(t, tok, first)
	fresh := startUpstream(t, "products")
	// The instance registers passing; the ingress serves it first, so that
	// its removal below is observed rather than assumed.
	waitServing(t, tok, first, fresh)
	fresh.setHealth(t, api.HealthCritical)
	waitIngressWithout(t, fresh)
	before := fresh.requests.Load()
	for range 20 {
		get(t, "/api/products/products", bearer(tok))
	}
	if got := fresh.requests.Load() - before; got != 0 {
		t.Fatalf("an unhealthy instance received %d of 20 requests", got)
	}
	start := time.Now()
	fresh.setHealth(t, api.HealthPassing)
	for fresh.requests.Load() == before {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the new instance got no traffic within 5s")
		}
		get(t, "/api/products/products", bearer(tok))
	}
	elapsed := time.Since(start)
	t.Logf("new instance served its first request %s after turning healthy", elapsed.Round(time.Millisecond))
	if elapsed > time.Second {
		t.Fatalf("took %s, want at most 1s", elapsed)
	}
}

// TestIntentionDeniesIngress: an intention denying ingress -> products
// turns the products routes into 403 while users keeps working; removing
// it restores them.
func TestIntentionDeniesIngress(t *testing.T) {
	tok := validToken(t)
	products := startUpstream(t, "products")
	waitServing(t, tok, products)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	entries := env.consulAPI.ConfigEntries()
	deny := &api.ServiceIntentionsConfigEntry{
		Kind: api.ServiceIntentions, Name: "products",
		Sources: []*api.SourceIntention{{Name: "ingress", Action: api.IntentionActionDeny}},
	}
	if _, _, err := entries.Set(deny, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	removed := false
	remove := func() {
		if !removed {
			_, _ = entries.Delete(api.ServiceIntentions, "products", (&api.WriteOptions{}).WithContext(ctx))
			removed = true
		}
	}
	t.Cleanup(remove)
	start := time.Now()
	var denied response
	localenvtest.Eventually(t, 10*time.Second, 50*time.Millisecond, "products denied", func(context.Context) error {
		if denied = get(t, "/api/products/products", bearer(tok)); denied.Status != http.StatusForbidden {
			return errStatus(denied)
		}
		return nil
	})
	t.Logf("deny intention enforced after %s", time.Since(start).Round(time.Millisecond))
	// The sidecar's own "RBAC: access denied" reaches the client as a
	// problem, like every error.
	requireProblem(t, denied, http.StatusForbidden, "urn:portico:problem:forbidden")
	if d, _ := denied.JSON(t)["detail"].(string); strings.Contains(strings.ToLower(d), "rbac") {
		t.Fatalf("the detail names the sidecar's filter: %q", d)
	}
	if r := get(t, "/api/users/users/1", bearer(tok)); r.Status != http.StatusOK {
		t.Fatalf("users affected by a products intention: %d: %s", r.Status, r.Body)
	}
	remove()
	localenvtest.Eventually(t, 10*time.Second, 50*time.Millisecond, "products allowed again", func(context.Context) error {
		if r := get(t, "/api/products/products", bearer(tok)); r.Status != http.StatusOK {
			return errStatus(r)
		}
		return nil
	})
}

// waitIngressWithout waits until the ingress Envoy acknowledged a
// configuration whose products cluster no longer holds u's endpoint.
func waitIngressWithout(t *testing.T, u *upstream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	endpoint := net.JoinHostPort("127.0.0.1", strconv.Itoa(u.SidecarPort))
	err := localenv.Poll(ctx, 20*time.Millisecond, func(ctx context.Context) error {
		version := env.cp.Server().Version(xdsserver.IngressGroup)
		if err := env.cp.Server().WaitAcked(ctx, "ingress-1", version); err != nil {
			return err
		}
		hosts, err := clusterHosts(ctx, "products")
		if err != nil {
			return err
		}
		if slices.Contains(hosts, endpoint) {
			return fmt.Errorf("ingress acked %s and still routes to %s", version, endpoint)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s leaving the ingress: %v", u.ID, err)
	}
}

// clusterHosts lists the endpoints of one cluster as the ingress Envoy
// holds them (its admin /clusters, one "cluster::host:port::field::value"
// line per field).
func clusterHosts(ctx context.Context, cluster string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, env.ingress.AdminURL()+"/clusters", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var hosts []string
	for line := range strings.Lines(string(b)) {
		parts := strings.Split(strings.TrimSpace(line), "::")
		if len(parts) == 4 && parts[0] == cluster && parts[2] == "health_flags" {
			hosts = append(hosts, parts[1])
		}
	}
	return hosts, nil
}
