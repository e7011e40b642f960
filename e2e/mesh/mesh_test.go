package mesh_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/mesh/localenv"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
)

func TestMain(m *testing.M) {
	os.Exit(localenvtest.Run(m, localenvtest.Postgres, localenvtest.RabbitMQ))
}

// rbacDenied is what a sidecar answers a request an L7 intention denies.
const rbacDenied = "RBAC: access denied"

// TestMesh runs every scenario on one topology, in order: starting it
// takes most of the time, and the scenarios leave it as they found it,
// except the last two, which stop and restart products instances.
func TestMesh(t *testing.T) {
	e := setup(t)

	t.Run("ClientReachesServicesThroughSidecars", func(t *testing.T) { testReach(t, e) })
	t.Run("PlaintextToSidecarRefused", func(t *testing.T) { testPlaintextRefused(t, e) })
	t.Run("ServicesListenOnLoopbackOnly", func(t *testing.T) { testLoopbackOnly(t, e) })
	t.Run("L7IntentionAllowsGetDeniesDelete", func(t *testing.T) { testL7(t, e) })
	t.Run("DenyIntentionBlocksAndDeletionRestores", func(t *testing.T) { testDenyIntention(t, e) })
	t.Run("FailoverToSecondProductsInstance", func(t *testing.T) { testFailover(t, e) })
	t.Run("GracefulStopDeregistersFirst", func(t *testing.T) { testGracefulStop(t, e) })
}

func testReach(t *testing.T, e *meshEnv) {
	ctx := t.Context()
	for _, tc := range []struct {
		via, dest, path, want string
	}{
		{"ingress", "users", "/openapi.json", `"components"`},
		{"ingress", "users_service", "/openapi.json", `"components"`}, // the seed's alias
		{"ingress", "products", "/products", `"items"`},
		{"edge", "products", "/products", `"items"`},
		{"edge", "users", "/.well-known/jwks.json", `"keys"`},
	} {
		c := e.ingress
		if tc.via == "edge" {
			c = e.edge
		}
		status, body, err := request(ctx, http.MethodGet, c.upstream(tc.dest)+tc.path)
		if err != nil || status != http.StatusOK || !strings.Contains(body, tc.want) {
			t.Errorf("%s -> %s GET %s = %d %.120q %v; want 200 with %s", tc.via, tc.dest, tc.path, status, body, err, tc.want)
		}
	}
	// The hop between sidecars is mutual TLS: the client sidecar made TLS
	// handshakes to the products cluster and products presented a Connect
	// leaf certificate with its SPIFFE identity.
	if n := statSum(t, e.ingress.sidecar.AdminURL(), regexp.MustCompile(`^cluster\.products\..*\.ssl\.handshake$`)); n == 0 {
		t.Error("ingress sidecar made no TLS handshakes to products")
	}
	_, certs, err := request(ctx, http.MethodGet, e.products[0].sidecar.AdminURL()+"/certs")
	if err != nil || !regexp.MustCompile(`spiffe://[^"]+/svc/products`).MatchString(certs) {
		t.Errorf("products sidecar has no SPIFFE certificate for products (%v)", err)
	}
}

func testPlaintextRefused(t *testing.T, e *meshEnv) {
	for _, inst := range []*instance{e.users, e.products[0]} {
		pub := sidecarPort(t, e, inst.id)
		addr := loopback(pub)
		// Plain HTTP: the listener expects a TLS ClientHello and closes.
		status, body, err := request(t.Context(), http.MethodGet, "http://"+addr+"/openapi.json")
		if err == nil {
			t.Errorf("plaintext GET to %s's sidecar %s answered %d %.80q", inst.id, addr, status, body)
		}
		// TLS without a Connect client certificate fails the handshake.
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			// TLS 1.3 reports a missing client certificate on first read.
			_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
			_, werr := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
			_, rerr := bufio.NewReader(conn).ReadByte()
			conn.Close()
			if werr == nil && rerr == nil {
				t.Errorf("TLS without a client certificate to %s's sidecar was accepted", inst.id)
			}
		}
	}
}

func testLoopbackOnly(t *testing.T, e *meshEnv) {
	ip := nonLoopbackIP(t)
	if ip == "" {
		t.Log("no non-loopback IPv4 address on this machine; checking the bound addresses only")
	}
	for _, inst := range []*instance{e.users, e.products[0], e.products[1]} {
		for _, port := range []int{inst.port, sidecarPort(t, e, inst.id)} {
			addrs := listenAddrs(t, port)
			if len(addrs) == 0 {
				t.Errorf("%s: nothing listens on port %d", inst.id, port)
			}
			for _, a := range addrs {
				if a != "127.0.0.1" {
					t.Errorf("%s: port %d is bound to %s, not 127.0.0.1", inst.id, port, a)
				}
			}
			if ip == "" {
				continue
			}
			conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(port)), 2*time.Second)
			if err == nil {
				conn.Close()
				t.Errorf("%s: port %d accepts connections on %s", inst.id, port, ip)
			}
		}
	}
}

func testL7(t *testing.T, e *meshEnv) {
	ctx := t.Context()
	for _, tc := range []struct {
		method, dest, path string
		allowed            bool
	}{
		{http.MethodGet, "products", "/products", true},
		{http.MethodHead, "products", "/products", true},
		{http.MethodDelete, "products", "/products/1", false},
		{http.MethodPost, "products", "/products", false},
		{http.MethodGet, "users", "/openapi.json", true},
		{http.MethodDelete, "users", "/users/00000000-0000-0000-0000-000000000000", false},
	} {
		status, body, err := request(ctx, tc.method, e.edge.upstream(tc.dest)+tc.path)
		if err != nil {
			t.Errorf("edge %s %s%s: %v", tc.method, tc.dest, tc.path, err)
			continue
		}
		denied := status == http.StatusForbidden && body == rbacDenied
		switch {
		case tc.allowed && denied:
			t.Errorf("edge %s %s%s = %d %.80q, want the service's answer", tc.method, tc.dest, tc.path, status, body)
		case tc.allowed && tc.method == http.MethodGet && status != http.StatusOK:
			t.Errorf("edge %s %s%s = %d %.80q, want 200", tc.method, tc.dest, tc.path, status, body)
		case !tc.allowed && !denied:
			t.Errorf("edge %s %s%s = %d %.80q, want 403 %q from the sidecar", tc.method, tc.dest, tc.path, status, body, rbacDenied)
		}
	}
	// The ingress may delete: the request reaches the service, which
	// answers by its own rules (no identity headers here).
	status, body, err := request(ctx, http.MethodDelete, e.ingress.upstream("products")+"/products/1")
	if err != nil || body == rbacDenied {
		t.Errorf("ingress DELETE products = %d %.80q %v; want the service's answer", status, body, err)
	}
	t.Logf("ingress DELETE /products/1 reached the service: %d", status)
}

// testDenyIntention changes intentions with the consul CLI as an operator
// would (see mesh/README.md) and measures how long the sidecars take to
// enforce the change. echo's entry allows every caller; the operator adds
// a deny for meshclient to it and later removes that source again.
func testDenyIntention(t *testing.T, e *meshEnv) {
	ctx := t.Context()
	echo := e.probe.upstream("echo") + "/"
	ok := func(ctx context.Context) error {
		status, body, err := request(ctx, http.MethodGet, echo)
		if err != nil || status != http.StatusOK || body != "echo" {
			return fmt.Errorf("GET echo = %d %q: %w", status, body, err)
		}
		return nil
	}
	blocked := func(ctx context.Context) error {
		status, body, err := request(ctx, http.MethodGet, echo)
		if err == nil && status == http.StatusForbidden && body == rbacDenied {
			return nil
		}
		return fmt.Errorf("GET echo = %d %q, not denied yet: %w", status, body, err)
	}
	wait := func(what string, cond func(context.Context) error) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := localenv.Poll(wctx, 50*time.Millisecond, cond); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	wait("meshclient -> echo allowed at first", ok)

	dir := t.TempDir()
	withDeny := filepath.Join(dir, "echo-deny.json")
	without := filepath.Join(dir, "echo.json")
	writeFile(t, withDeny, `{"Kind": "service-intentions", "Name": "echo", "Sources": [
  {"Name": "meshclient", "Action": "deny"},
  {"Name": "*", "Action": "allow"}
]}`)
	writeFile(t, without, `{"Kind": "service-intentions", "Name": "echo", "Sources": [
  {"Name": "*", "Action": "allow"}
]}`)

	begin := time.Now()
	consulCLI(t, e, "config", "write", withDeny)
	wait("the deny intention to take effect", blocked)
	denyAfter := time.Since(begin)
	// `consul intention check` exits 1 for Denied; its output says which.
	if out, _ := consulCLIErr(t, e, "intention", "check", "meshclient", "echo"); !strings.Contains(out, "Denied") {
		t.Errorf("consul intention check meshclient echo = %q, want Denied", out)
	}
	// Still denied a moment later: not a transient failure.
	time.Sleep(500 * time.Millisecond)
	if err := blocked(ctx); err != nil {
		t.Fatalf("traffic came back while the deny intention exists: %v", err)
	}

	begin = time.Now()
	consulCLI(t, e, "config", "write", without)
	wait("traffic to return after deleting the intention", ok)
	allowAfter := time.Since(begin)

	t.Logf("intention propagation: deny enforced %v after `consul config write` started, traffic restored %v after the deny was removed",
		denyAfter.Round(time.Millisecond), allowAfter.Round(time.Millisecond))
	fmt.Printf("MEASURED intention propagation: deny %v, allow again %v\n", denyAfter.Round(time.Millisecond), allowAfter.Round(time.Millisecond))
	if denyAfter > 10*time.Second || allowAfter > 10*time.Second {
		t.Errorf("intentions took longer than 10 s to propagate")
	}

	// The same on a real edge, with the real file: deny ingress -> users,
	// then restore it by writing mesh/entries' file again.
	users := e.ingress.upstream("users") + "/openapi.json"
	usersOK := func(ctx context.Context) error {
		status, _, err := request(ctx, http.MethodGet, users)
		if err != nil || status != http.StatusOK {
			return fmt.Errorf("GET users = %d: %w", status, err)
		}
		return nil
	}
	usersBlocked := func(ctx context.Context) error {
		status, body, err := request(ctx, http.MethodGet, users)
		if err == nil && status == http.StatusForbidden && body == rbacDenied {
			return nil
		}
		return fmt.Errorf("GET users = %d %q, not denied yet: %w", status, body, err)
	}
	usersFile := filepath.Join("..", "..", "mesh", "entries", "31-intentions-users.json")
	denyIngress := filepath.Join(dir, "users-deny-ingress.json")
	writeFile(t, denyIngress, `{"Kind": "service-intentions", "Name": "users", "Sources": [
  {"Name": "ingress", "Action": "deny"}
]}`)
	wait("ingress -> users allowed at first", usersOK)
	begin = time.Now()
	consulCLI(t, e, "config", "write", denyIngress)
	wait("ingress -> users denied", usersBlocked)
	usersDenyAfter := time.Since(begin)
	begin = time.Now()
	consulCLI(t, e, "config", "write", usersFile)
	wait("ingress -> users allowed again after writing mesh/entries' file", usersOK)
	usersAllowAfter := time.Since(begin)
	t.Logf("ingress -> users: denied %v after the write, allowed again %v after writing the original file",
		usersDenyAfter.Round(time.Millisecond), usersAllowAfter.Round(time.Millisecond))
	fmt.Printf("MEASURED ingress -> users: deny %v, allow again %v\n", usersDenyAfter.Round(time.Millisecond), usersAllowAfter.Round(time.Millisecond))

	// At L4 (protocol tcp) a denied client gets no status at all: the
	// destination's sidecar closes the connection.
	tcpEcho := e.probe.upstream("tcpecho") + "/"
	tcpOK := func(ctx context.Context) error {
		status, body, err := request(ctx, http.MethodGet, tcpEcho)
		if err != nil || status != http.StatusOK || body != "echo" {
			return fmt.Errorf("GET tcpecho = %d %q: %w", status, body, err)
		}
		return nil
	}
	var tcpDeniedErr error
	tcpBlocked := func(ctx context.Context) error {
		status, body, err := request(ctx, http.MethodGet, tcpEcho)
		if err == nil {
			return fmt.Errorf("GET tcpecho = %d %q, not denied yet", status, body)
		}
		tcpDeniedErr = err
		return nil
	}
	tcpDeny := filepath.Join(dir, "tcpecho-deny.json")
	tcpAllow := filepath.Join(dir, "tcpecho.json")
	writeFile(t, tcpDeny, `{"Kind": "service-intentions", "Name": "tcpecho", "Sources": [
  {"Name": "meshclient", "Action": "deny"},
  {"Name": "*", "Action": "allow"}
]}`)
	writeFile(t, tcpAllow, `{"Kind": "service-intentions", "Name": "tcpecho", "Sources": [
  {"Name": "*", "Action": "allow"}
]}`)
	wait("meshclient -> tcpecho allowed at first", tcpOK)
	begin = time.Now()
	consulCLI(t, e, "config", "write", tcpDeny)
	wait("the L4 deny to take effect", tcpBlocked)
	tcpDenyAfter := time.Since(begin)
	time.Sleep(300 * time.Millisecond)
	if err := tcpBlocked(ctx); err != nil {
		t.Fatalf("tcpecho answered while the L4 deny exists: %v", err)
	}
	consulCLI(t, e, "config", "write", tcpAllow)
	wait("tcpecho traffic to return", tcpOK)
	t.Logf("L4 deny (protocol tcp) enforced after %v; the client saw: %v", tcpDenyAfter.Round(time.Millisecond), tcpDeniedErr)

	// The legacy per-pair commands refuse destinations managed by config
	// entries, which is why mesh/README.md has operators edit entries.
	if out, err := consulCLIErr(t, e, "intention", "create", "-deny", "meshclient", "echo"); err == nil {
		t.Errorf("consul intention create on a config-entry destination succeeded: %s", out)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func testFailover(t *testing.T, e *meshEnv) {
	ctx := t.Context()
	products := e.ingress.upstream("products") + "/products"
	get := func(ctx context.Context) error {
		status, _, err := request(ctx, http.MethodGet, products)
		if err != nil || status != http.StatusOK {
			return fmt.Errorf("GET products = %d: %w", status, err)
		}
		return nil
	}
	if err := get(ctx); err != nil {
		t.Fatal(err)
	}
	victim, survivor := e.products[0], e.products[1]

	killedAt := time.Now()
	kill(t, victim)
	// Keep calling while Consul notices; count what fails meanwhile.
	var failed, sent int
	var criticalAfter time.Duration
	for criticalAfter == 0 {
		if time.Since(killedAt) > 30*time.Second {
			t.Fatalf("consul did not mark %s critical within 30 s", victim.id)
		}
		sent++
		if get(ctx) != nil {
			failed++
		}
		status, _, err := e.api.Agent().AgentHealthServiceByID(victim.id)
		if err == nil && status == api.HealthCritical {
			criticalAfter = time.Since(killedAt)
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.waitHealthyEndpoints(ctx, t, "products", 1)
	endpointsAfter := time.Since(killedAt)
	// From now on every request must succeed on the survivor.
	deadline := time.Now().Add(10 * time.Second)
	streak := 0
	for streak < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("no 20 successful requests in a row after %s left the endpoints", victim.id)
		}
		sent++
		if err := get(ctx); err != nil {
			failed++
			streak = 0
		} else {
			streak++
		}
	}
	stableAfter := time.Since(killedAt)
	for i := range 20 {
		if err := get(ctx); err != nil {
			t.Fatalf("request %d on the survivor %s failed: %v", i, survivor.id, err)
		}
	}
	t.Logf("failover: %s critical after %v, out of the endpoints after %v, 20 requests in a row ok after %v; %d of %d requests failed in between",
		victim.id, criticalAfter.Round(time.Millisecond), endpointsAfter.Round(time.Millisecond), stableAfter.Round(time.Millisecond), failed, sent)
	fmt.Printf("MEASURED failover: critical %v, endpoints %v, stable %v, failed %d/%d\n",
		criticalAfter.Round(time.Millisecond), endpointsAfter.Round(time.Millisecond), stableAfter.Round(time.Millisecond), failed, sent)

	// Restarted (same id and port), it registers again and takes traffic.
	restartedAt := time.Now()
	e.startProcess(ctx, t, victim)
	e.waitHealthyEndpoints(ctx, t, "products", 2)
	rejoinedAfter := time.Since(restartedAt)
	before := hostSuccesses(t, e.ingress.sidecar.AdminURL(), "products")
	deadline = time.Now().Add(15 * time.Second)
	for {
		if err := get(ctx); err != nil {
			t.Logf("request after rejoin: %v", err)
		}
		after := hostSuccesses(t, e.ingress.sidecar.AdminURL(), "products")
		if len(after) == 2 && after[sidecarHost(t, e, victim.id)] > before[sidecarHost(t, e, victim.id)] &&
			after[sidecarHost(t, e, survivor.id)] > before[sidecarHost(t, e, survivor.id)] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart not both instances served requests: before %v, after %v", before, after)
		}
	}
	t.Logf("failover: %s passing again %v after its restart and both instances serve requests", victim.id, rejoinedAfter.Round(time.Millisecond))
}

// testGracefulStop stops a products instance with SIGTERM while a client
// keeps calling products: the instance deregisters (with its sidecar)
// and drains before it closes, so no request fails.
func testGracefulStop(t *testing.T, e *meshEnv) {
	ctx := t.Context()
	inst := e.products[1]
	products := e.ingress.upstream("products") + "/products"
	p := inst.process()
	stopped := make(chan error, 1)
	begin := time.Now()
	go func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		stopped <- p.Stop(stopCtx)
	}()
	var sent, failed int
	var stopErr error
loop:
	for {
		select {
		case stopErr = <-stopped:
			break loop
		default:
		}
		sent++
		if status, body, err := request(ctx, http.MethodGet, products); err != nil || status != http.StatusOK {
			failed++
			t.Logf("during the stop: %d %.80q %v", status, body, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if stopErr != nil {
		t.Fatalf("stop %s: %v", inst.id, stopErr)
	}
	took := time.Since(begin)
	for _, id := range []string{inst.id, inst.id + "-sidecar-proxy"} {
		if _, _, err := e.api.Agent().Service(id, nil); err == nil {
			t.Errorf("%s is still registered after a graceful stop", id)
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d requests failed while %s stopped gracefully", failed, sent, inst.id)
	}
	t.Logf("graceful stop of %s took %v; %d requests during it, %d failed", inst.id, took.Round(time.Millisecond), sent, failed)
	e.waitHealthyEndpoints(ctx, t, "products", 1)
}

// consulCLI runs the consul CLI against the test agent and returns its
// output; failing is fatal.
func consulCLI(t *testing.T, e *meshEnv, args ...string) string {
	t.Helper()
	out, err := consulCLIErr(t, e, args...)
	if err != nil {
		t.Fatalf("consul %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func consulCLIErr(t *testing.T, e *meshEnv, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.consul.Binary(), args...)
	cmd.Env = e.consul.CLIEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// sidecarPort returns the public port of the sidecar of service id.
func sidecarPort(t *testing.T, e *meshEnv, id string) int {
	t.Helper()
	s, _, err := e.api.Agent().Service(id+"-sidecar-proxy", nil)
	if err != nil {
		t.Fatal(err)
	}
	return s.Port
}

func sidecarHost(t *testing.T, e *meshEnv, id string) string {
	return loopback(sidecarPort(t, e, id))
}

// statSum adds up the Envoy counters whose names match re.
func statSum(t *testing.T, adminURL string, re *regexp.Regexp) int {
	t.Helper()
	_, body, err := requestFull(t, adminURL+"/stats")
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, line := range strings.Split(body, "\n") {
		name, value, ok := strings.Cut(line, ": ")
		if !ok || !re.MatchString(name) {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSpace(value)); err == nil {
			sum += n
		}
	}
	return sum
}

// hostSuccesses returns rq_success per endpoint (host:port) of the
// upstream cluster for service, from Envoy's /clusters.
func hostSuccesses(t *testing.T, adminURL, service string) map[string]int {
	t.Helper()
	_, body, err := requestFull(t, adminURL+"/clusters")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, line := range strings.Split(body, "\n") {
		// products.default.dc1.internal.<trust domain>.consul::127.0.0.1:21082::rq_success::5
		parts := strings.Split(line, "::")
		if len(parts) != 4 || !strings.HasPrefix(parts[0], service+".") || parts[2] != "rq_success" {
			continue
		}
		n, _ := strconv.Atoi(parts[3])
		out[parts[1]] = n
	}
	return out
}

// requestFull GETs url without the 4 KiB cap of request.
func requestFull(t *testing.T, url string) (int, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		b.WriteString(sc.Text())
		b.WriteByte('\n')
	}
	return resp.StatusCode, b.String(), sc.Err()
}

// nonLoopbackIP returns an IPv4 address of this machine other than
// loopback, or "".
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

// listenAddrs returns the local addresses of the TCP sockets listening on
// port, from /proc/net/tcp and tcp6 ("0.0.0.0" or "::" would mean every
// interface).
func listenAddrs(t *testing.T, port int) []string {
	t.Helper()
	var out []string
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			if file == "/proc/net/tcp6" {
				continue // no IPv6 on this machine
			}
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 4 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			hexIP, hexPort, ok := strings.Cut(f[1], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseUint(hexPort, 16, 16); err != nil || int(p) != port {
				continue
			}
			out = append(out, procIP(hexIP))
		}
	}
	return out
}

// procIP decodes an address of /proc/net/tcp{,6}: 32-bit words in host
// (little-endian) byte order.
func procIP(h string) string {
	var ip net.IP
	for i := 0; i+8 <= len(h); i += 8 {
		w, err := strconv.ParseUint(h[i:i+8], 16, 32)
		if err != nil {
			return h
		}
		ip = append(ip, byte(w), byte(w>>8), byte(w>>16), byte(w>>24))
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return ip.String()
}
