package ingress_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

// TestCARotationUnderTraffic rotates the Connect CA (a new root key) while
// clients call the ingress. The ingress must move to a leaf issued under
// the new root with no restart (SDS), and no request may fail while it,
// the control plane and the sidecars move over: the old root stays
// trusted until leaves it signed are gone, and new leaves carry Consul's
// cross-signed chain.
func TestCARotationUnderTraffic(t *testing.T) {
	tok := validToken(t)
	instance := startUpstream(t, "products")
	waitServing(t, tok, instance)
	rootsBefore, _, err := env.consulAPI.Connect().CARoots(nil)
	if err != nil {
		t.Fatal(err)
	}
	servedBefore := presentedSerial(t)

	traffic := startTraffic(t, "/api/products/products", tok)

	rotated := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := env.consul.RotateCA(ctx); err != nil {
		t.Fatal(err)
	}

	// Consul re-issues leaves within a jittered window after a rotation
	// (up to 30 s); the ingress must then present the new one.
	var switched time.Duration
	localenvtest.Eventually(t, 90*time.Second, 50*time.Millisecond, "the ingress presents a leaf of the new root", func(context.Context) error {
		roots, _, err := env.consulAPI.Connect().CARoots(nil)
		if err != nil {
			return err
		}
		if roots.ActiveRootID == rootsBefore.ActiveRootID {
			return fmt.Errorf("root %s still active", roots.ActiveRootID)
		}
		leaf, _, err := env.consulAPI.Agent().ConnectCALeaf("ingress", nil)
		if err != nil {
			return err
		}
		cert, err := parseCertPEM(leaf.CertPEM)
		if err != nil {
			return err
		}
		if !issuedUnderActiveRoot(leaf.CertPEM, roots.Roots, roots.ActiveRootID) {
			return fmt.Errorf("the agent's ingress leaf %s is not issued by the new root yet", serialText(cert))
		}
		if served := presentedSerial(t); served != serialText(cert) {
			return fmt.Errorf("Envoy presents %s, the agent has issued %s", served, serialText(cert))
		}
		switched = time.Since(rotated)
		return nil
	})
	if presentedSerial(t) == servedBefore {
		t.Fatal("the presented leaf did not change")
	}
	// Some traffic on the new leaf too, then the verdict.
	time.Sleep(2 * time.Second)
	sent, failures := traffic.stop()
	t.Logf("CA rotation: the ingress presented the new root's leaf %v after the change; %d requests sent, %d failed",
		switched.Round(time.Millisecond), sent, len(failures))
	if sent == 0 {
		t.Fatal("no traffic was sent")
	}
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed during the rotation, first: %s", len(failures), sent, failures[0])
	}
	// The upstream kept receiving: the successes were real answers.
	before := instance.requests.Load()
	if r := get(t, "/api/products/products", bearer(tok)); r.Status != http.StatusOK || instance.requests.Load() == before {
		t.Fatalf("after the rotation: %d, upstream requests %d -> %d", r.Status, before, instance.requests.Load())
	}
}

// traffic is a client calling one path in a loop until stopped.
type traffic struct {
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	sent     atomic.Int64
	mu       sync.Mutex
	failures []string
}

// startTraffic calls path on the ingress every 10 ms; t's cleanup stops it
// if the test ends first.
func startTraffic(t *testing.T, path, tok string) *traffic {
	ctx, cancel := context.WithCancel(context.Background())
	tr := &traffic{cancel: cancel}
	client := &http.Client{Timeout: 10 * time.Second}
	tr.wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if failure := tr.once(ctx, client, path, tok); failure != "" {
				tr.mu.Lock()
				tr.failures = append(tr.failures, failure)
				tr.mu.Unlock()
			}
		}
	})
	t.Cleanup(func() { tr.stop() })
	return tr
}

// once sends one request and describes its failure, if any.
func (tr *traffic) once(ctx context.Context, client *http.Client, path, tok string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, env.ingressURL+path, nil)
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if ctx.Err() != nil {
		return "" // stopped mid-request: not a failure of the system
	}
	tr.sent.Add(1)
	if err != nil {
		return fmt.Sprintf("%s: %v", time.Now().Format(time.StampMilli), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("%s: status %d", time.Now().Format(time.StampMilli), resp.StatusCode)
	}
	return ""
}

// stop ends the traffic and returns how many requests were sent and the
// failures seen.
func (tr *traffic) stop() (int64, []string) {
	tr.cancel()
	tr.wg.Wait()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.sent.Load(), append([]string(nil), tr.failures...)
}

// presentedSerial is the serial number of the leaf the ingress Envoy
// presents to upstreams, from its admin /certs.
func presentedSerial(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(env.ingress.AdminURL() + "/certs")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var certs struct {
		Certificates []struct {
			CertChain []struct {
				SerialNumber    string `json:"serial_number"`
				SubjectAltNames []struct {
					URI string `json:"uri"`
				} `json:"subject_alt_names"`
			} `json:"cert_chain"`
		} `json:"certificates"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&certs); err != nil {
		t.Fatalf("decode /certs: %v", err)
	}
	serials := map[string]bool{}
	for _, c := range certs.Certificates {
		for _, cert := range c.CertChain {
			for _, san := range cert.SubjectAltNames {
				if strings.HasSuffix(san.URI, "/svc/ingress") {
					serials[normalizeSerial(cert.SerialNumber)] = true
				}
			}
		}
	}
	if len(serials) != 1 {
		t.Fatalf("the ingress presents %d distinct leaves, want 1: %v", len(serials), serials)
	}
	for s := range serials {
		return s
	}
	return ""
}

func parseCertPEM(certPEM string) (*x509.Certificate, error) {
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil {
		return nil, fmt.Errorf("no PEM block in the leaf")
	}
	return x509.ParseCertificate(block.Bytes)
}

// issuedUnderActiveRoot reports whether the leaf (the first certificate
// of leafPEM, followed by its chain) verifies against the active root
// alone.
func issuedUnderActiveRoot(leafPEM string, roots []*api.CARoot, activeID string) bool {
	leaf, err := parseCertPEM(leafPEM)
	if err != nil {
		return false
	}
	trusted, intermediates := x509.NewCertPool(), x509.NewCertPool()
	intermediates.AppendCertsFromPEM([]byte(leafPEM))
	for _, r := range roots {
		if r.ID == activeID {
			trusted.AppendCertsFromPEM([]byte(r.RootCertPEM))
		}
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: trusted, Intermediates: intermediates, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

func serialText(cert *x509.Certificate) string { return normalizeSerial(cert.SerialNumber.Text(16)) }

// normalizeSerial makes serials comparable across formats (colons, case,
// leading zeros).
func normalizeSerial(s string) string {
	return strings.TrimLeft(strings.ToLower(strings.ReplaceAll(s, ":", "")), "0")
}
