package ingress_test

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/services/platform/identity"
	"github.com/portico-mesh/portico/services/users/token"
)

// validToken is a token the ingress must accept.
func validToken(t *testing.T, roles ...string) string {
	t.Helper()
	tok, _, err := env.issuer.Issue(token.Subject{ID: "0190-user-1", Username: "ada", Email: "ada@example.com", Roles: roles})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// signWith signs claims with a fresh key of the same kind, under the
// signing kid: a signature the JWKS cannot verify.
func signWith(t *testing.T, claims jwt.MapClaims, kid string) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func claims(mutate func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"iss": testIssuer, "aud": []string{testAudience}, "sub": "0190-user-1",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"username": "ada", "email": "ada@example.com", "roles": []string{"user"},
	}
	if mutate != nil {
		mutate(c)
	}
	return c
}

// signedByTestKey signs claims with the key the JWKS publishes, so only
// the claims decide acceptance.
func signedByTestKey(t *testing.T, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tok.Header["kid"] = env.issuer.Keyring().SigningKID()
	s, err := tok.SignedString(env.signingKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTokensRejected: every kind of bad token gets 401 problem+json at the
// ingress and never reaches the service.
func TestTokensRejected(t *testing.T) {
	kid := env.issuer.Keyring().SigningKID()
	// HS256 "signed" with the public JWKS as the secret: the classic
	// algorithm-confusion attack.
	hsHeader := b64(map[string]string{"alg": "HS256", "typ": "JWT", "kid": kid})
	hsPayload := b64(claims(nil))
	mac := hmac.New(sha256.New, *testJWKS.Load())
	mac.Write([]byte(hsHeader + "." + hsPayload))
	hs256 := hsHeader + "." + hsPayload + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	none := b64(map[string]string{"alg": "none", "typ": "JWT"}) + "." + b64(claims(nil)) + "."

	cases := map[string]map[string]string{
		"no token":         nil,
		"malformed":        bearer("not.a.jwt"),
		"not bearer":       {"Authorization": "Basic YWRhOnNlY3JldA=="},
		"alg none":         bearer(none),
		"HS256 public key": bearer(hs256),
		"bad signature":    bearer(signWith(t, claims(nil), kid)),
		"expired":          bearer(signedByTestKey(t, claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() }))),
		"not yet valid":    bearer(signedByTestKey(t, claims(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(2 * time.Minute).Unix() }))),
		"wrong issuer":     bearer(signedByTestKey(t, claims(func(c jwt.MapClaims) { c["iss"] = "someone-else" }))),
		"wrong audience":   bearer(signedByTestKey(t, claims(func(c jwt.MapClaims) { c["aud"] = []string{"other"} }))),
		"no expiry":        bearer(signedByTestKey(t, claims(func(c jwt.MapClaims) { delete(c, "exp") }))),
	}
	before := env.users.requests.Load()
	for name, header := range cases {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			r := get(t, "/api/users/users/42", header)
			requireProblem(t, r, http.StatusUnauthorized, "urn:portico:problem:unauthenticated")
		})
	}
	if after := env.users.requests.Load(); after != before {
		t.Fatalf("the service received %d rejected requests", after-before)
	}
}

// TestValidTokenCarriesIdentity: a valid token reaches the service with
// the identity headers from its claims; client-sent copies are replaced.
func TestValidTokenCarriesIdentity(t *testing.T) {
	header := bearer(validToken(t, "user", "admin"))
	header["X-Portico-User-Id"] = "spoofed-admin"
	header["X-Portico-Roles"] = "admin"
	header["X-Portico-Something-Else"] = "spoofed"
	r := get(t, "/api/users/users/42?x=1", header)
	if r.Status != http.StatusOK {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	seen := env.users.Seen()
	last := seen[len(seen)-1]
	if last.Path != "/users/42?x=1" {
		t.Fatalf("service saw path %q, want /users/42?x=1", last.Path)
	}
	want := map[string]string{
		"X-Portico-User-Id": "0190-user-1", "X-Portico-Username": "ada",
		"X-Portico-Email":          "ada@example.com",
		"X-Portico-Something-Else": "", "X-Forwarded-Prefix": "/api/users",
	}
	for k, v := range want {
		if got := last.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q (all: %v)", k, got, v, last.Header)
		}
	}
	// The services read the roles header with identity.ParseRoles.
	if roles := identity.ParseRoles(last.Header.Get("X-Portico-Roles")); !slices.Equal(roles, []string{"user", "admin"}) {
		t.Errorf("roles %q from header %q", roles, last.Header.Get("X-Portico-Roles"))
	}
}

// TestPublicRoutes need no token, and a public route does not pass on
// identity a client made up.
func TestPublicRoutes(t *testing.T) {
	r := call(t, env.ingressURL, http.MethodPost, "/api/users/login", map[string]string{
		"Content-Type": "application/json", "X-Portico-User-Id": "spoofed",
	}, `{"email":"a@b.c","password":"x"}`)
	if r.Status != http.StatusOK {
		t.Fatalf("login: status %d: %s", r.Status, r.Body)
	}
	seen := env.users.Seen()
	last := seen[len(seen)-1]
	if last.Path != "/login" || last.Header.Get("X-Portico-User-Id") != "" {
		t.Fatalf("service saw %s with user id %q", last.Path, last.Header.Get("X-Portico-User-Id"))
	}
	// A trailing slash is tolerated.
	if r := call(t, env.ingressURL, http.MethodPost, "/api/users/users/", map[string]string{"Content-Type": "application/json"}, `{}`); r.Status != http.StatusOK {
		t.Fatalf("register with trailing slash: status %d: %s", r.Status, r.Body)
	}
	if r := get(t, "/api/users/.well-known/jwks.json", nil); r.Status != http.StatusOK {
		t.Fatalf("jwks: status %d: %s", r.Status, r.Body)
	}
	if r := get(t, "/healthz", nil); r.Status != http.StatusOK {
		t.Fatalf("ingress health: status %d", r.Status)
	}
}

// TestKeyRotation: a token signed by a key the users service starts to
// publish is accepted once the ingress refreshed the key set, within the
// configured refresh time; tokens of the old key keep working while it is
// still published.
func TestKeyRotation(t *testing.T) {
	const refresh = 2 * time.Second
	useDocument(t, func(d *edgeconfig.Document) { d.Auth.JWKS.Refresh = edgeconfig.Duration(refresh) })
	oldToken := validToken(t)
	// The old key set was fetched before; make sure it is in use.
	if r := get(t, "/api/users/users/1", bearer(oldToken)); r.Status != http.StatusOK {
		t.Fatalf("old token: %d %s", r.Status, r.Body)
	}
	_, newKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	oldPublic := env.signingKey.Public().(ed25519.PublicKey)
	rotated, err := token.NewKeyring(newKey, oldPublic)
	if err != nil {
		t.Fatal(err)
	}
	before := testJWKS.Load()
	jwks := rotated.JWKS()
	testJWKS.Store(&jwks)
	t.Cleanup(func() { testJWKS.Store(before) })
	issuer, err := token.NewIssuer(rotated, token.Config{Issuer: testIssuer, Audience: testAudience, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	newToken, _, err := issuer.Issue(token.Subject{ID: "0190-user-2", Username: "grace", Email: "grace@example.com", Roles: []string{"user"}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	localenvtest.Eventually(t, 3*refresh, 50*time.Millisecond, "the new key is honoured", func(context.Context) error {
		if r := get(t, "/api/users/users/1", bearer(newToken)); r.Status != http.StatusOK {
			return errStatus(r)
		}
		return nil
	})
	t.Logf("a token of the new key was accepted %s after the key set changed (refresh %s)", time.Since(start).Round(time.Millisecond), refresh)
	if r := get(t, "/api/users/users/1", bearer(oldToken)); r.Status != http.StatusOK {
		t.Fatalf("a token of the old, still published key: %d %s", r.Status, r.Body)
	}
}

// TestOperationalEndpointsHidden: a service's metrics, health and
// readiness are for the platform inside the mesh; through the ingress they
// are 404, token or not, and the service never sees the request.
func TestOperationalEndpointsHidden(t *testing.T) {
	before := len(env.users.Seen())
	for _, path := range []string{
		"/api/users/metrics", "/api/users/readyz", "/api/users/healthz/",
		"/proxy/users/metrics", "/proxy/users_service/readyz", "/api/products/metrics",
	} {
		requireProblem(t, get(t, path, bearer(validToken(t))), http.StatusNotFound, "urn:portico:problem:not-found")
	}
	// Envoy may fetch the JWKS from the same service meanwhile: only an
	// operational path would be a leak.
	for _, r := range env.users.Seen()[before:] {
		if r.Path != "/.well-known/jwks.json" {
			t.Errorf("the service received %s %s", r.Method, r.Path)
		}
	}
}
