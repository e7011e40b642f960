package catalog

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

// Tests against the package's Consul dev agent. They do not run in
// parallel: the quiet-period assertions need the catalog to themselves.

// publishWithin bounds how long a change may take to show; the agent
// answers in milliseconds, the margin is for a loaded machine.
const publishWithin = 15 * time.Second

func TestFirstSnapshotHasIdentity(t *testing.T) {
	client := localenvtest.ConsulClient(t)
	r := startWatcher(t, client, nil)
	snap := r.next(t, publishWithin)

	roots, _, err := client.Connect().CARoots(nil)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Datacenter != "dc1" {
		t.Errorf("datacenter = %q, want dc1", snap.Datacenter)
	}
	if snap.TrustDomain == "" || snap.TrustDomain != roots.TrustDomain {
		t.Errorf("trust domain = %q, want %q", snap.TrustDomain, roots.TrustDomain)
	}
	if len(snap.RootsPEM) != len(roots.Roots) || len(snap.RootsPEM) == 0 {
		t.Fatalf("roots = %d, want %d", len(snap.RootsPEM), len(roots.Roots))
	}
	for _, root := range roots.Roots {
		if root.Active && snap.RootsPEM[0] != root.RootCertPEM {
			t.Error("the active root is not first")
		}
	}

	ingress := r.w.cfg.IngressService
	wantID := "spiffe://" + roots.TrustDomain + "/ns/default/dc/dc1/svc/" + ingress
	if snap.Leaf.SpiffeID != wantID {
		t.Errorf("leaf SPIFFE ID = %q, want %q", snap.Leaf.SpiffeID, wantID)
	}
	cert := parseCert(t, snap.Leaf.CertPEM)
	if len(cert.URIs) != 1 || cert.URIs[0].String() != wantID {
		t.Errorf("leaf certificate URIs = %v, want [%s]", cert.URIs, wantID)
	}
	if !cert.NotAfter.Equal(snap.Leaf.ValidBefore) || snap.Leaf.ValidBefore.Location() != time.UTC {
		t.Errorf("ValidBefore = %v, certificate NotAfter = %v", snap.Leaf.ValidBefore, cert.NotAfter)
	}
	if time.Until(snap.Leaf.ValidBefore) < time.Hour {
		t.Errorf("leaf expires at %v, too soon for a fresh one", snap.Leaf.ValidBefore)
	}
	pool := x509.NewCertPool()
	for _, p := range snap.RootsPEM {
		pool.AppendCertsFromPEM([]byte(p))
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("the leaf does not verify against the published roots: %v", err)
	}
	if block, _ := pem.Decode([]byte(snap.Leaf.KeyPEM)); block == nil || !bytes.Contains([]byte(block.Type), []byte("PRIVATE KEY")) {
		t.Error("the leaf has no private key")
	}
	if snap.Config.Present {
		t.Errorf("config = %+v, want absent: the key was never written", snap.Config)
	}
	if _, ok := service(snap, "consul"); ok {
		t.Error("the consul service is listed")
	}
}

func parseCert(t *testing.T, certPEM string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil {
		t.Fatal("the leaf certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestServiceLifecycle(t *testing.T) {
	client := localenvtest.ConsulClient(t)
	self, err := client.Agent().Self()
	if err != nil {
		t.Fatal(err)
	}
	node, _ := self["Config"]["NodeName"].(string)
	r := startWatcher(t, client, nil)
	first := r.next(t, publishWithin)
	servicesBefore := len(first.Services)

	name := uniqueName("orders")
	registered := time.Now()
	one := registerConnect(t, client, name, name+"-1", map[string]string{"openapi": "/openapi.yaml", "version": "1"})
	snap, at := r.until(t, publishWithin, name+" has an endpoint", func(s Snapshot) bool {
		svc, ok := service(s, name)
		return ok && len(svc.Endpoints) == 1
	})
	t.Logf("register -> publish: %v", at.Sub(registered).Round(time.Millisecond))
	svc, _ := service(snap, name)
	want := Endpoint{Address: "127.0.0.1", Port: one.sidecarPort, InstanceID: node + "/" + name + "-1"}
	if svc.Endpoints[0] != want {
		t.Errorf("endpoint = %+v, want %+v", svc.Endpoints[0], want)
	}
	if svc.Meta["openapi"] != "/openapi.yaml" || svc.Meta["version"] != "1" {
		t.Errorf("meta = %v, want the service's own (inherited by its sidecar)", svc.Meta)
	}
	if _, ok := service(snap, name+"-sidecar-proxy"); ok {
		t.Error("the sidecar proxy is listed as a service")
	}
	if got := r.metric(t, "portico_catalog_watched_services"); int(got) != servicesBefore+1 {
		t.Errorf("watched services = %v, want %d (proxies are not watched)", got, servicesBefore+1)
	}

	// A second instance: both endpoints, sorted.
	two := registerConnect(t, client, name, name+"-2", map[string]string{"openapi": "/openapi.yaml", "version": "2"})
	snap, _ = r.until(t, publishWithin, name+" has two endpoints", func(s Snapshot) bool {
		svc, ok := service(s, name)
		return ok && len(svc.Endpoints) == 2
	})
	svc, _ = service(snap, name)
	if !slices.IsSortedFunc(svc.Endpoints, compareEndpoints) {
		t.Errorf("endpoints are not sorted: %+v", svc.Endpoints)
	}
	if svc.Meta["version"] != "1" {
		t.Errorf("version meta = %q, want 1 (a tie goes to the smallest value)", svc.Meta["version"])
	}

	// A failing sidecar check takes its endpoint out.
	setTTL(t, client, one.sidecarCheckID, "down for the test", api.HealthCritical)
	snap, _ = r.until(t, publishWithin, "the failing instance is gone", func(s Snapshot) bool {
		svc, ok := service(s, name)
		return ok && len(svc.Endpoints) == 1
	})
	svc, _ = service(snap, name)
	if svc.Endpoints[0].Port != two.sidecarPort {
		t.Errorf("the remaining endpoint is %+v, want port %d", svc.Endpoints[0], two.sidecarPort)
	}

	// With every instance failing the service stays, with no endpoints.
	setTTL(t, client, two.sidecarCheckID, "down for the test", api.HealthCritical)
	snap, _ = r.until(t, publishWithin, "no endpoint is left", func(s Snapshot) bool {
		svc, ok := service(s, name)
		return ok && len(svc.Endpoints) == 0
	})
	if svc, _ := service(snap, name); svc.Endpoints == nil {
		t.Error("endpoints are nil, want empty")
	}

	// Recovery brings the endpoint back.
	setTTL(t, client, one.sidecarCheckID, "up again", api.HealthPassing)
	r.until(t, publishWithin, "the recovered instance is back", func(s Snapshot) bool {
		svc, ok := service(s, name)
		return ok && len(svc.Endpoints) == 1 && svc.Endpoints[0].Port == one.sidecarPort
	})

	// Deregistering every instance removes the service.
	deregister(t, client, one.id)
	deregister(t, client, two.id)
	r.until(t, publishWithin, name+" is gone", func(s Snapshot) bool {
		_, ok := service(s, name)
		return !ok
	})
	ctx, cancel := context.WithTimeout(t.Context(), publishWithin)
	defer cancel()
	if err := localenv.Poll(ctx, 20*time.Millisecond, func(context.Context) error {
		if got := int(r.metric(t, "portico_catalog_watched_services")); got != servicesBefore {
			return fmt.Errorf("watched services = %d, want %d after the deregistration", got, servicesBefore)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := r.metric(t, "portico_catalog_snapshot_publishes_total"); got < 7 {
		t.Errorf("publishes metric = %v, want at least 7", got)
	}
}

func TestConfigDocumentFromKV(t *testing.T) {
	client := localenvtest.ConsulClient(t)
	r := startWatcher(t, client, nil)
	key := r.w.cfg.ConfigKey
	t.Cleanup(func() {
		if _, err := client.KV().Delete(key, nil); err != nil {
			t.Error(err)
		}
	})
	if first := r.next(t, publishWithin); first.Config.Present {
		t.Fatalf("config present before any write: %+v", first.Config)
	}

	doc := []byte("version: 1\nroutes: []\n")
	put(t, client, key, doc)
	snap, _ := r.until(t, publishWithin, "the document is present", func(s Snapshot) bool { return s.Config.Present })
	pair, _, err := client.KV().Get(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snap.Config.Value, doc) || snap.Config.ModifyIndex != pair.ModifyIndex {
		t.Errorf("config = %q at %d, want %q at %d", snap.Config.Value, snap.Config.ModifyIndex, doc, pair.ModifyIndex)
	}

	// Consul skips a write of identical bytes: no new revision, no
	// publish.
	put(t, client, key, doc)
	if pair, _, err := client.KV().Get(key, nil); err != nil || pair.ModifyIndex != snap.Config.ModifyIndex {
		t.Fatalf("an identical write made a new revision (%v): this test's premise is wrong", err)
	}
	r.quiet(t, time.Second, "writing identical bytes")

	changed := []byte("version: 1\nroutes: [x]\n")
	put(t, client, key, changed)
	r.until(t, publishWithin, "the changed document is present", func(s Snapshot) bool { return bytes.Equal(s.Config.Value, changed) })

	if _, err := client.KV().Delete(key, nil); err != nil {
		t.Fatal(err)
	}
	r.until(t, publishWithin, "the document is absent", func(s Snapshot) bool { return !s.Config.Present && s.Config.Value == nil })
}

func put(t *testing.T, client *api.Client, key string, value []byte) {
	t.Helper()
	if _, err := client.KV().Put(&api.KVPair{Key: key, Value: value}, nil); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// TestNoPublishWithoutChange makes the watcher's queries wake up with new
// indexes for changes that do not touch its snapshot, and checks that
// nothing is published; then a real change is, so the silence was not a
// dead watcher.
func TestNoPublishWithoutChange(t *testing.T) {
	client := localenvtest.ConsulClient(t)
	name := uniqueName("quiet")
	inst := registerConnect(t, client, name, name+"-1", nil)
	// Blocking queries that time out every second: the quiet periods
	// below each see every watch answer with an unchanged index.
	r := startWatcher(t, client, func(c *Config) { c.WaitTime = time.Second })
	r.until(t, publishWithin, name+" is listed", func(s Snapshot) bool {
		svc, ok := service(s, name)
		return ok && len(svc.Endpoints) == 1
	})
	r.quiet(t, 3*time.Second, "blocking queries timing out")

	// A service without Connect: the service list changes, the snapshot
	// does not.
	updates := r.metric(t, "portico_catalog_query_updates_total", "watch", kindServices)
	registerPlain(t, client, uniqueName("legacy"), uniqueName("legacy-1"))
	waitMetricAbove(t, r, "portico_catalog_query_updates_total", kindServices, updates)
	r.quiet(t, 2*time.Second, "registering a service without Connect")

	// New tags on the instance, which its sidecar inherits: the service
	// list and the service's Connect health both answer with new
	// indexes, the snapshot (which has no tags) does not change. (A
	// passing check's new output would not do: the agent syncs output
	// alone only every few minutes.)
	updates = r.metric(t, "portico_catalog_query_updates_total", "watch", kindHealth)
	if err := client.Agent().ServiceRegister(connectRegistration(name, inst.id, nil, []string{"retagged"})); err != nil {
		t.Fatal(err)
	}
	waitMetricAbove(t, r, "portico_catalog_query_updates_total", kindHealth, updates)
	r.quiet(t, 2*time.Second, "new tags on an instance")

	// Another key in KV. A blocking read of one key wakes only for that
	// key, but answers with the whole store's index: the next timeout
	// brings a new index with the same (absent) document.
	updates = r.metric(t, "portico_catalog_query_updates_total", "watch", kindConfig)
	other := "portico-test/" + uniqueName("unrelated")
	put(t, client, other, []byte("x"))
	t.Cleanup(func() { _, _ = client.KV().Delete(other, nil) })
	waitMetricAbove(t, r, "portico_catalog_query_updates_total", kindConfig, updates)
	r.quiet(t, 2*time.Second, "a write to an unrelated key")

	// And a real change still comes through.
	setTTL(t, client, inst.sidecarCheckID, "down", api.HealthCritical)
	r.until(t, publishWithin, "the failing endpoint is gone", func(s Snapshot) bool {
		svc, ok := service(s, name)
		return ok && len(svc.Endpoints) == 0
	})
}

func waitMetricAbove(t *testing.T, r *running, name, kind string, above float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), publishWithin)
	defer cancel()
	if err := localenv.Poll(ctx, 10*time.Millisecond, func(context.Context) error {
		if r.metric(t, name, "watch", kind) <= above {
			return fmt.Errorf("%s{watch=%q} stayed at %v: the change never reached the watcher", name, kind, above)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestRegistrationLatency measures how long a registration takes to reach
// a published snapshot, from ServiceRegister returning, with sidecars that
// pass from the start (see connectRegistration): for a new instance
// of a service already watched, and for the first instance of a new
// service (which needs the service list to answer and a new health watch
// to start). It fails only if one takes longer than a second, the issue's
// bound for a new instance to receive traffic end to end.
func TestRegistrationLatency(t *testing.T) {
	client := localenvtest.ConsulClient(t)
	r := startWatcher(t, client, nil)
	r.next(t, publishWithin)

	name := uniqueName("latency")
	const rounds = 20
	var known, fresh []time.Duration
	for i := range rounds {
		begin := time.Now()
		registerConnect(t, client, name, uniqueName(name), nil)
		_, at := r.until(t, publishWithin, "the new instance is listed", func(s Snapshot) bool {
			svc, _ := service(s, name)
			return len(svc.Endpoints) == i+1
		})
		known = append(known, at.Sub(begin))
	}
	for range rounds / 2 {
		newName := uniqueName("latency-new")
		begin := time.Now()
		registerConnect(t, client, newName, newName+"-1", nil)
		_, at := r.until(t, publishWithin, "the new service is listed", func(s Snapshot) bool {
			svc, _ := service(s, newName)
			return len(svc.Endpoints) == 1
		})
		fresh = append(fresh, at.Sub(begin))
	}
	t.Logf("coalescing window %v", r.w.cfg.Coalesce)
	t.Logf("register -> publish, new instance of a watched service: %s", summarize(known))
	t.Logf("register -> publish, first instance of a new service:   %s", summarize(fresh))
	for _, d := range append(known, fresh...) {
		if d > time.Second {
			t.Errorf("a registration took %v to publish, want under 1s", d)
		}
	}
}

func summarize(ds []time.Duration) string {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	n := len(ds)
	r := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
	return fmt.Sprintf("n=%d min %v median %v p90 %v max %v", n, r(ds[0]), r(ds[n/2]), r(ds[n*9/10]), r(ds[n-1]))
}

// TestFollowsAgentRestart restarts a private dev agent under the watcher.
// The new agent has a new CA (another trust domain, another leaf) and
// indexes that start over: the watcher must see the failures, recover,
// and publish the new identity without waiting out a blocking query.
//
// The new agent does not answer a query waiting on an index it has not
// reached with a lower index: it blocks. So resetting on an index that
// goes backwards is not enough here; this test fails (nothing is published
// for the WaitTime) if the watch keeps its index across a failed query.
func TestFollowsAgentRestart(t *testing.T) {
	agent := localenvtest.StartConsul(t)
	client, err := agent.Client()
	if err != nil {
		t.Fatal(err)
	}
	r := startWatcher(t, client, func(c *Config) { c.WaitTime = 10 * time.Minute })
	before := r.next(t, publishWithin)
	name := uniqueName("restart")
	registerConnect(t, client, name, name+"-1", nil)
	r.until(t, publishWithin, name+" is listed", func(s Snapshot) bool { _, ok := service(s, name); return ok })

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := agent.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitMetricAbove(t, r, "portico_catalog_query_errors_total", kindLeaf, 0)
	waitMetricAbove(t, r, "portico_catalog_query_errors_total", kindRoots, 0)
	stoppedFor := time.Now()
	if err := agent.Start(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	t.Logf("agent down for %v", restarted.Sub(stoppedFor).Round(time.Millisecond))

	// A dev agent forgets its registrations and makes a new CA.
	after, at := r.until(t, 30*time.Second, "the new trust domain and leaf are published", func(s Snapshot) bool {
		_, listed := service(s, name)
		return s.TrustDomain != before.TrustDomain && s.Leaf.SpiffeID != before.Leaf.SpiffeID && !listed
	})
	t.Logf("agent ready -> new identity published: %v; index resets: leaf %v, roots %v, services %v, config %v",
		at.Sub(restarted).Round(time.Millisecond),
		r.metric(t, "portico_catalog_index_resets_total", "watch", kindLeaf),
		r.metric(t, "portico_catalog_index_resets_total", "watch", kindRoots),
		r.metric(t, "portico_catalog_index_resets_total", "watch", kindServices),
		r.metric(t, "portico_catalog_index_resets_total", "watch", kindConfig))
	roots, _, err := client.Connect().CARoots(nil)
	if err != nil {
		t.Fatal(err)
	}
	if after.TrustDomain != roots.TrustDomain {
		t.Errorf("trust domain = %q, want the new agent's %q", after.TrustDomain, roots.TrustDomain)
	}
	pool := x509.NewCertPool()
	for _, p := range after.RootsPEM {
		pool.AppendCertsFromPEM([]byte(p))
	}
	if _, err := parseCert(t, after.Leaf.CertPEM).Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("the new leaf does not verify against the new roots: %v", err)
	}

	// Registrations after the restart are followed as before.
	again := uniqueName("restart")
	registerConnect(t, client, again, again+"-1", nil)
	r.until(t, publishWithin, again+" is listed", func(s Snapshot) bool {
		svc, ok := service(s, again)
		return ok && len(svc.Endpoints) == 1
	})
}

// TestFollowsCARotation rotates the Connect CA of a private agent (a new
// root key) and expects the new roots, both trusted, the new one first, and
// a leaf the agent re-issued under the new root, published live.
func TestFollowsCARotation(t *testing.T) {
	agent := localenvtest.StartConsul(t)
	client, err := agent.Client()
	if err != nil {
		t.Fatal(err)
	}
	r := startWatcher(t, client, nil)
	before := r.next(t, publishWithin)

	rotated := time.Now()
	if err := agent.RotateCA(t.Context()); err != nil {
		t.Fatal(err)
	}

	snap, at := r.until(t, time.Minute, "the leaf is re-issued under the new root", func(s Snapshot) bool {
		return len(s.RootsPEM) == 2 && s.Leaf.CertPEM != before.Leaf.CertPEM && verifies(s.Leaf.CertPEM, s.RootsPEM[:1])
	})
	t.Logf("CA rotation -> new leaf published: %v", at.Sub(rotated).Round(time.Millisecond))
	if snap.RootsPEM[1] != before.RootsPEM[0] {
		t.Error("the old root is not kept, second, while leaves it signed are still valid")
	}
	if snap.TrustDomain != before.TrustDomain || snap.Leaf.SpiffeID != before.Leaf.SpiffeID {
		t.Errorf("identity changed with the rotation: %s %s -> %s %s", before.TrustDomain, before.Leaf.SpiffeID, snap.TrustDomain, snap.Leaf.SpiffeID)
	}
}

// verifies says whether certPEM chains to one of rootsPEM.
func verifies(certPEM string, rootsPEM []string) bool {
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil {
		return false
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return false
	}
	pool := x509.NewCertPool()
	for _, p := range rootsPEM {
		pool.AppendCertsFromPEM([]byte(p))
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}
