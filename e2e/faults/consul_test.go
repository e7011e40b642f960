package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/services/platform/consulwatch"
)

// consulOutage is how long Consul's agent stays down.
const consulOutage = 10 * time.Second

// Consul's agent stops (SIGTERM) under load, stays down for consulOutage
// and starts again with its data (the suite's agent is a persistent
// server, stack.ServersConfig.PersistentConsul). While it is down the
// ingress and the sidecars keep their configuration; after the restart
// the cluster is the same one: every instance still registered and
// passing, the Connect CA's root unchanged, the certificates the sidecars
// and the ingress hold still issued by it. The control plane's catalog
// watch resumes (once its retry backoff, grown by the outage, runs out):
// an instance put in maintenance afterwards leaves the ingress's
// endpoints, and comes back. No request fails throughout.
func TestConsulAgentRestarted(t *testing.T) {
	r := newRow(t, 3, fmt.Sprintf("Consul agent SIGTERM, down %d s, restarted with its data", int(consulOutage.Seconds())), "0 failed; catalog and CA kept; watch resumes")
	consul := sys.servers.Consul
	if !consul.Persistent() {
		t.Fatal("the suite's Consul keeps no state: its restart would be a new cluster")
	}
	client := sys.servers.ConsulAPI
	l := startLoad(t, loadConfig{Rate: 60, WriteEvery: 10})
	waitRequests(t, l, 120)
	before := ingressConfig(t)
	catalogBefore := connectCatalog(t, client)
	rootsBefore, _, err := client.Connect().CARoots((&api.QueryOptions{}).WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	proxies := map[string]string{
		"ingress":                   sys.ingress.AdminURL(),
		sys.products[0].SidecarID(): sys.products[0].Sidecar().AdminURL(),
		sys.products[1].SidecarID(): sys.products[1].Sidecar().AdminURL(),
	}
	trustBefore := map[string][]string{}
	for name, admin := range proxies {
		trustBefore[name] = proxyCerts(t, name, admin).roots
	}

	stopCtx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := consul.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := consul.Start(ctx); err != nil {
				t.Errorf("restart consul: %v", err)
			}
		}
	})
	down := l.snapshot().Requests
	waitRequests(t, l, down+int(consulOutage.Seconds())*60)
	whileDown := l.snapshot()
	if got := ingressConfig(t); got != before {
		t.Errorf("the ingress's configuration changed while Consul was down")
	}

	startCtx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	began := time.Now()
	if err := consul.Start(startCtx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	t.Logf("the agent restarted (leader, CA root) in %v", time.Since(began).Round(time.Millisecond))

	// The same cluster: its catalog and its CA.
	began = time.Now()
	localenvtest.Eventually(t, 30*time.Second, 200*time.Millisecond, "the catalog as before the restart", func(ctx context.Context) error {
		if got := connectCatalog(t, client); !maps.EqualFunc(got, catalogBefore, slices.Equal) {
			return fmt.Errorf("passing endpoints %v, before the restart %v", got, catalogBefore)
		}
		return nil
	})
	t.Logf("the catalog as before %v after the restart", time.Since(began).Round(time.Millisecond))
	rootsAfter, _, err := client.Connect().CARoots((&api.QueryOptions{}).WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	if rootsAfter.ActiveRootID != rootsBefore.ActiveRootID || rootsAfter.TrustDomain != rootsBefore.TrustDomain {
		t.Errorf("the CA after the restart: root %s of %s; before: %s of %s",
			rootsAfter.ActiveRootID, rootsAfter.TrustDomain, rootsBefore.ActiveRootID, rootsBefore.TrustDomain)
	}
	for name, admin := range proxies {
		after := proxyCerts(t, name, admin)
		if !slices.Equal(after.roots, trustBefore[name]) {
			t.Errorf("%s trusts CA serials %v after the restart, %v before", name, after.roots, trustBefore[name])
		}
		if after.leafDays <= 0 {
			t.Errorf("%s's certificate expires in %d days", name, after.leafDays)
		}
	}

	// The control plane's watch resumed: a health change still reaches
	// the ingress, both ways.
	inMaintenance := sys.products[1].ID()
	if err := client.Agent().EnableServiceMaintenance(inMaintenance, "e2e/faults: a catalog change after the restart"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := client.Agent().DisableServiceMaintenance(inMaintenance); err != nil {
			t.Errorf("end %s's maintenance: %v", inMaintenance, err)
		}
	})
	// The first change waits out the watch's retry backoff, which the
	// outage grew (at most consulwatch.DefaultMaxBackoff).
	began = time.Now()
	waitEndpoints(t, 1, consulwatch.DefaultMaxBackoff+15*time.Second)
	out := time.Since(began)
	if err := client.Agent().DisableServiceMaintenance(inMaintenance); err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	waitEndpoints(t, 2, 30*time.Second)
	t.Logf("%s in maintenance: out of the ingress's endpoints in %v, back in %v", inMaintenance,
		out.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	waitRequests(t, l, l.snapshot().Requests+120)
	got := l.stop()
	t.Logf("%s; %d requests while the agent was down, %d since", got, whileDown.Requests-down, got.Requests-whileDown.Requests)
	r.Requests, r.Failures = got.Requests, got.non2xx()
	if got.non2xx() > 0 {
		t.Errorf("%d requests failed (%d while Consul was down): %s", got.non2xx(), whileDown.non2xx(), got)
	}
}

// connectCatalog lists, by service, the ids of the passing sidecars that
// Consul gives callers as endpoints.
func connectCatalog(t *testing.T, client *api.Client) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, service := range []string{"users", "products", "edge"} {
		entries, _, err := client.Health().Connect(service, "", true, (&api.QueryOptions{}).WithContext(t.Context()))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			out[service] = append(out[service], e.Service.ID)
		}
		slices.Sort(out[service])
	}
	return out
}

// waitEndpoints waits until the ingress has n products endpoints.
func waitEndpoints(t *testing.T, n int, within time.Duration) {
	t.Helper()
	localenvtest.WaitUntil(t, within, fmt.Sprintf("%d products endpoints at the ingress", n), func() bool {
		return envoyStat(t, "cluster.products.membership_total") == n
	})
}

// trust is what an Envoy's admin /certs says of its certificates: the
// serial numbers of the CA certificates it trusts, and the days until
// its own (leaf) certificate expires (the least, if several).
type trust struct {
	roots    []string
	leafDays int
}

func proxyCerts(t *testing.T, name, adminURL string) trust {
	t.Helper()
	var certs struct {
		Certificates []struct {
			CACert []struct {
				SerialNumber        string `json:"serial_number"`
				DaysUntilExpiration string `json:"days_until_expiration"`
			} `json:"ca_cert"`
			CertChain []struct {
				SerialNumber        string `json:"serial_number"`
				DaysUntilExpiration string `json:"days_until_expiration"`
			} `json:"cert_chain"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal(getBody(t, adminURL+"/certs"), &certs); err != nil {
		t.Fatalf("%s /certs: %v", name, err)
	}
	var out trust
	out.leafDays = -1
	for _, c := range certs.Certificates {
		for _, ca := range c.CACert {
			if !slices.Contains(out.roots, ca.SerialNumber) {
				out.roots = append(out.roots, ca.SerialNumber)
			}
		}
		if len(c.CertChain) > 0 {
			days, err := strconv.Atoi(c.CertChain[0].DaysUntilExpiration)
			if err != nil {
				t.Fatalf("%s /certs: %v", name, err)
			}
			if out.leafDays < 0 || days < out.leafDays {
				out.leafDays = days
			}
		}
	}
	slices.Sort(out.roots)
	if len(out.roots) == 0 || out.leafDays < 0 {
		t.Fatalf("%s holds no Connect certificates: %+v", name, certs)
	}
	return out
}
