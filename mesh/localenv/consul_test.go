package localenv

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// startConsul starts a private agent that the test stops (and checks) at
// cleanup unless it stopped it itself.
func startConsul(t *testing.T) *Consul {
	t.Helper()
	return startConsulWith(t, ConsulOptions{})
}

// startConsulWith is startConsul with opts (Dir is the test's).
func startConsulWith(t *testing.T, opts ConsulOptions) *Consul {
	t.Helper()
	opts.Dir = t.TempDir()
	start := time.Now()
	c, err := StartConsul(startCtx(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("consul (persistent %v): start (leader + CA root) took %v", opts.Persistent, time.Since(start))
	t.Cleanup(func() {
		c.mu.Lock()
		p := c.proc
		c.mu.Unlock()
		if err := c.Stop(stopCtx(t)); err != nil {
			t.Error(err)
		}
		if p != nil {
			requireGone(t, p)
		}
	})
	return c
}

func consulClient(t *testing.T, c *Consul) *api.Client {
	t.Helper()
	client, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// nonLoopbackIP returns an IPv4 address of this machine other than
// loopback, or "" if it has none.
func nonLoopbackIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	return ""
}

func TestConsul(t *testing.T) {
	t.Parallel()
	c := startConsul(t)
	client := consulClient(t, c)

	self, err := client.Agent().Self()
	if err != nil {
		t.Fatal(err)
	}
	if dc := self["Config"]["Datacenter"]; dc != c.Datacenter() {
		t.Errorf("agent datacenter = %v, want %s", dc, c.Datacenter())
	}
	if node := self["Config"]["NodeName"]; node != c.Node() {
		t.Errorf("agent node = %v, want %s", node, c.Node())
	}
	roots, _, err := client.Connect().CARoots(nil)
	if err != nil || len(roots.Roots) == 0 {
		t.Fatalf("CA roots = %v, %v", roots, err)
	}
	lo, hi := c.SidecarPortRange()
	if lo < rangeLow || hi > rangeHigh || hi-lo+1 != portRangeSize {
		t.Errorf("sidecar port range %d-%d outside the private ranges", lo, hi)
	}

	// Only loopback: the HTTP API must not answer on another address.
	if ip := nonLoopbackIP(t); ip != "" {
		_, port, _ := net.SplitHostPort(c.HTTPAddr())
		if conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, port), time.Second); err == nil {
			conn.Close()
			t.Errorf("consul HTTP API answers on %s:%s", ip, port)
		}
	}

	// A sidecar registration without a port gets one from our range.
	reg := &api.AgentServiceRegistration{
		ID: "web-1", Name: "web", Address: "127.0.0.1", Port: 1,
		Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{}},
	}
	if err := client.Agent().ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	proxy, _, err := client.Agent().Service("web-1-sidecar-proxy", nil)
	if err != nil {
		t.Fatal(err)
	}
	if proxy.Port < lo || proxy.Port > hi {
		t.Errorf("sidecar got port %d, outside %d-%d", proxy.Port, lo, hi)
	}

	// Restart on the same port; a dev agent forgets its registrations.
	c.mu.Lock()
	first := c.proc
	c.mu.Unlock()
	if err := c.Stop(stopCtx(t)); err != nil {
		t.Fatal(err)
	}
	requireGone(t, first)
	_, port, _ := net.SplitHostPort(c.HTTPAddr())
	p, _ := strconv.Atoi(port)
	requirePortClosed(t, p)
	if err := c.Start(startCtx(t)); err != nil {
		t.Fatal(err)
	}
	services, err := client.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := services["web-1"]; ok {
		t.Error("a restarted dev agent still has a registration")
	}
}

// A persistent agent restarted with SIGTERM comes back as the same
// cluster: its registrations, KV and Connect CA root are still there, and
// a leaf certificate issued before the restart still chains to a root it
// trusts.
func TestConsulPersistent(t *testing.T) {
	t.Parallel()
	c := startConsulWith(t, ConsulOptions{Persistent: true})
	client := consulClient(t, c)
	reg := &api.AgentServiceRegistration{
		ID: "web-1", Name: "web", Address: "127.0.0.1", Port: 1,
		Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{}},
	}
	if err := client.Agent().ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := client.KV().Put(&api.KVPair{Key: "portico/test", Value: []byte("kept")}, nil); err != nil {
		t.Fatal(err)
	}
	rootsBefore, _, err := client.Connect().CARoots(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _, err := client.Agent().ConnectCALeaf("web", nil)
	if err != nil {
		t.Fatal(err)
	}

	c.mu.Lock()
	first := c.proc
	c.mu.Unlock()
	if err := c.Stop(stopCtx(t)); err != nil {
		t.Fatal(err)
	}
	requireGone(t, first)
	start := time.Now()
	if err := c.Start(startCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Logf("consul (persistent): restart (leader + CA root) took %v", time.Since(start))

	services, err := client.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"web-1", "web-1-sidecar-proxy"} {
		if _, ok := services[id]; !ok {
			t.Errorf("after the restart the agent lost %s (has %v)", id, slices.Collect(maps.Keys(services)))
		}
	}
	// Local registrations come back from the agent's own files; the
	// catalog's copy from raft (or the anti-entropy sync that follows).
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = Poll(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		nodes, _, err := client.Catalog().Service("web", "", (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return err
		}
		if len(nodes) != 1 {
			return fmt.Errorf("catalog has %d web instances", len(nodes))
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	kv, _, err := client.KV().Get("portico/test", nil)
	if err != nil || kv == nil || string(kv.Value) != "kept" {
		t.Errorf("KV after the restart = %v, %v; want kept", kv, err)
	}
	rootsAfter, _, err := client.Connect().CARoots(nil)
	if err != nil {
		t.Fatal(err)
	}
	if rootsAfter.ActiveRootID != rootsBefore.ActiveRootID || rootsAfter.TrustDomain != rootsBefore.TrustDomain {
		t.Errorf("CA after the restart: root %s, trust domain %s; before %s, %s",
			rootsAfter.ActiveRootID, rootsAfter.TrustDomain, rootsBefore.ActiveRootID, rootsBefore.TrustDomain)
	}
	if err := verifyLeaf(leaf.CertPEM, rootsAfter); err != nil {
		t.Errorf("the leaf issued before the restart: %v", err)
	}
}

// verifyLeaf checks that certPEM chains to one of roots.
func verifyLeaf(certPEM string, roots *api.CARootList) error {
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil {
		return errors.New("no PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	for _, r := range roots.Roots {
		pool.AppendCertsFromPEM([]byte(r.RootCertPEM))
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// TestSidecars runs a client and a server sidecar: a request to the
// client's upstream listener reaches the server over mTLS, and stopping the
// sidecars leaves nothing running.
func TestSidecars(t *testing.T) {
	t.Parallel()
	c := startConsul(t)
	client := consulClient(t, c)

	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from api")
	}))
	t.Cleanup(backend.Close)
	_, backendPort, _ := net.SplitHostPort(backend.Listener.Addr().String())
	bp, _ := strconv.Atoi(backendPort)

	var apiPub, webPub, upstream int
	if err := FreePorts(&apiPub, &webPub, &upstream); err != nil {
		t.Fatal(err)
	}
	regs := []*api.AgentServiceRegistration{
		{
			ID: "api", Name: "api", Address: "127.0.0.1", Port: bp,
			Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{
				Address: "127.0.0.1", Port: apiPub,
				Checks: api.AgentServiceChecks{{Name: "listening", TCP: Loopback(apiPub), Interval: "1s"}},
			}},
		},
		{
			ID: "web", Name: "web", Address: "127.0.0.1", Port: 1,
			Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{
				Address: "127.0.0.1", Port: webPub,
				Checks: api.AgentServiceChecks{{Name: "listening", TCP: Loopback(webPub), Interval: "1s"}},
				Proxy: &api.AgentServiceConnectProxyConfig{Upstreams: []api.Upstream{{
					DestinationName: "api", LocalBindAddress: "127.0.0.1", LocalBindPort: upstream,
				}}},
			}},
		},
	}
	for _, r := range regs {
		if err := client.Agent().ServiceRegister(r); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	var sidecars []*Sidecar
	for _, id := range []string{"api", "web"} {
		start := time.Now()
		s, err := StartSidecar(startCtx(t), SidecarOptions{Consul: c, SidecarFor: id, Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("sidecar %s: LIVE after %v", id, time.Since(start))
		sidecars = append(sidecars, s)
		t.Cleanup(func() {
			if err := s.Stop(stopCtx(t)); err != nil {
				t.Error(err)
			}
		})
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var body string
	err := Poll(ctx, 100*time.Millisecond, func(ctx context.Context) (err error) {
		body, err = get(ctx, "http://"+Loopback(upstream)+"/")
		return err
	})
	if err != nil {
		t.Fatalf("request through the mesh: %v", err)
	}
	if body != "hello from api" {
		t.Errorf("through the mesh got %q", body)
	}
	// The public listener speaks mTLS only.
	if got, err := get(t.Context(), "http://"+Loopback(apiPub)+"/"); err == nil {
		t.Errorf("plaintext request to the public listener answered %q", got)
	}

	for _, s := range sidecars {
		p := s.proc
		if err := s.Stop(stopCtx(t)); err != nil {
			t.Fatal(err)
		}
		requireGone(t, p)
		requirePortClosed(t, s.adminPort)
	}
	requirePortClosed(t, upstream)
	requirePortClosed(t, apiPub)
}

func TestSidecarForUnknownService(t *testing.T) {
	t.Parallel()
	c := startConsul(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := StartSidecar(ctx, SidecarOptions{Consul: c, SidecarFor: "nobody", Dir: t.TempDir()})
	if err == nil {
		t.Fatal("started a sidecar for a service that is not registered")
	}
	if !strings.Contains(err.Error(), "No sidecar proxy registered for nobody") {
		t.Errorf("error = %v, want Consul's reason", err)
	}
}

// get returns the body of a 200 response to a GET of url.
func get(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %d %s", url, resp.StatusCode, b)
	}
	return string(b), nil
}
