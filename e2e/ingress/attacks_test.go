package ingress_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portico-mesh/portico/services/platform/contract"
	"github.com/portico-mesh/portico/services/platform/problem"
)

// attack is one hostile request shape and what the ingress must answer.
type attack struct {
	name string
	// send sends the attack's requests and returns their responses.
	send   func(t *testing.T) []response
	status int
	// reaches is true where the request is meant to reach the service
	// (with what it smuggled removed, see leaked); otherwise not one
	// request may.
	reaches bool
	// check, if set, judges what the service received.
	check func(t *testing.T, seen []seenRequest)
}

// serviceHits counts the requests the users upstream received since
// index from, leaving out the ingress's own key-set fetches.
func serviceHits(from int) (hits int, leaked []string) {
	for _, r := range env.users.Seen()[from:] {
		if r.Path == "/.well-known/jwks.json" {
			continue
		}
		hits++
		for k, v := range r.Header {
			if strings.HasPrefix(strings.ToLower(k), strings.ToLower(contract.HeaderPrefix)) {
				for _, value := range v {
					if strings.Contains(value, "spoof") || strings.Contains(value, "admin") || strings.Contains(value, "999") {
						leaked = append(leaked, k+": "+value)
					}
				}
			}
		}
	}
	return hits, leaked
}

// TestAttacksStopAtTheIngress: token forgeries, oversized requests,
// identity headers a client made up, and request smuggling shapes, each
// sent to the real ingress; each gets its status, and the recording
// upstream proves that nothing got through (or, for requests that are
// meant to pass, that what they smuggled did not). Attacks tested
// elsewhere are not repeated: alg none, HS256 with the public key, a bad
// signature, another issuer or audience, no expiry (TestTokensRejected);
// an over-long Content-Length and oversized header fields
// (TestIngressRepliesAreProblems); client copies of the identity headers
// on a valid token (TestValidTokenCarriesIdentity).
func TestAttacksStopAtTheIngress(t *testing.T) {
	kid := env.issuer.Keyring().SigningKID()
	// A server of the attacker's, publishing the attacker's key: the
	// ingress must never fetch it, whatever a token's header says.
	_, attackerKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	var attackerFetches atomic.Int64
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		attackerFetches.Add(1)
		pub := attackerKey.Public().(ed25519.PublicKey)
		fmt.Fprintf(w, `{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","use":"sig","kid":%q,"x":%q}]}`,
			kid, base64.RawURLEncoding.EncodeToString(pub))
	}))
	t.Cleanup(attacker.Close)

	// signed signs the standard claims with key under the given header.
	signed := func(t *testing.T, key ed25519.PrivateKey, header map[string]any) string {
		t.Helper()
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims(nil))
		for k, v := range header {
			tok.Header[k] = v
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	withToken := func(tok string) func(t *testing.T) []response {
		return func(t *testing.T) []response { return []response{get(t, "/api/users/users/42", bearer(tok))} }
	}
	raw := func(requests ...string) func(t *testing.T) []response {
		return func(t *testing.T) []response {
			var out []response
			for _, r := range requests {
				out = append(out, sendRaw(t, r))
			}
			return out
		}
	}
	// smuggled is a second request hidden in the first one's body: were
	// the framing read two ways, the service would receive it.
	const smuggled = "GET /api/users/users/1 HTTP/1.1\r\nHost: ingress\r\n\r\n"
	const login = "POST /api/users/login HTTP/1.1\r\nHost: ingress\r\nContent-Type: application/json\r\n"

	attacks := []attack{
		{name: "kid path traversal, the real key", status: 401, send: withToken(signed(t, env.signingKey, map[string]any{"kid": "../../../../etc/passwd"}))},
		{name: "kid path traversal, a foreign key", status: 401, send: withToken(signed(t, attackerKey, map[string]any{"kid": "../../../../etc/passwd"}))},
		{name: "unknown kid, the real key", status: 401, send: withToken(signed(t, env.signingKey, map[string]any{"kid": "no-such-key"}))},
		{name: "jku to the attacker's key set", status: 401, send: withToken(signed(t, attackerKey, map[string]any{"kid": kid, "jku": attacker.URL + "/jwks.json"}))},
		{name: "x5u to the attacker's server", status: 401, send: withToken(signed(t, attackerKey, map[string]any{"kid": kid, "x5u": attacker.URL + "/cert.pem"}))},
		{name: "jwk header with the attacker's key", status: 401, send: withToken(signed(t, attackerKey, map[string]any{"kid": kid, "jwk": map[string]string{
			"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(attackerKey.Public().(ed25519.PublicKey)),
		}}))},
		{name: "signature stripped", status: 401, send: func(t *testing.T) []response {
			tok := signed(t, env.signingKey, map[string]any{"kid": kid})
			return withToken(tok[:strings.LastIndex(tok, ".")+1])(t)
		}},
		{name: "huge token (80 KB)", status: 431, send: withToken(signed(t, env.signingKey, map[string]any{"kid": kid, "pad": strings.Repeat("A", 80<<10)}))},
		{name: "200 header fields", status: 431, send: func(t *testing.T) []response {
			h := bearer(validToken(t))
			for i := range 200 {
				h[fmt.Sprintf("X-Filler-%d", i)] = "x"
			}
			return []response{get(t, "/api/users/users/42", h)}
		}},
		{name: "identity headers, mixed case and duplicated, public route", status: 200, reaches: true, send: raw(
			login + "x-portico-user-id: 999\r\nX-PORTICO-USER-ID: 999\r\nX-Portico-Roles: admin\r\nx-PoRtIcO-rOlEs: admin\r\n" +
				"X-Portico-Upstream: spoofed\r\nContent-Length: 2\r\n\r\n{}")},
		{name: "identity headers, mixed case and duplicated, with a token", status: 200, reaches: true, send: func(t *testing.T) []response {
			return raw("GET /api/users/users/42 HTTP/1.1\r\nHost: ingress\r\nAuthorization: Bearer " + validToken(t, "user") + "\r\n" +
				"x-portico-user-id: 999\r\nX-Portico-User-Id: 999\r\nX-PORTICO-ROLES: admin\r\nx-portico-roles: admin\r\nX-Portico-Email: spoof@example.com\r\n\r\n")(t)
		}},
		{name: "identity header with underscores", status: 400, send: func(t *testing.T) []response {
			return []response{get(t, "/api/users/users/42", map[string]string{"Authorization": "Bearer " + validToken(t), "X_Portico_Roles": "admin"})}
		}},
		{name: "Content-Length and Transfer-Encoding (CL.TE)", status: 400, send: raw(
			login + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled)},
		{name: "Transfer-Encoding and Content-Length (TE.CL)", status: 400, send: raw(
			login + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n" + smuggled + "\r\n0\r\n\r\n")},
		{name: "two different Content-Lengths", status: 400, send: raw(
			login + "Content-Length: 2\r\nContent-Length: 52\r\n\r\n{}" + smuggled)},
		{name: "two equal Content-Lengths", status: 400, send: raw(
			login + "Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}")},
		{name: "Content-Length list", status: 400, send: raw(
			login + "Content-Length: 2, 2\r\n\r\n{}")},
		{name: "Content-Length with a sign", status: 400, send: raw(
			login + "Content-Length: +2\r\n\r\n{}")},
		{name: "Transfer-Encoding not chunked last", status: 501, send: raw(
			login + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n")},
		{name: "Transfer-Encoding obfuscated", status: 501, send: raw(
			login + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled)},
		{name: "space before the colon", status: 400, send: raw(
			login + "Transfer-Encoding : chunked\r\nContent-Length: 2\r\n\r\n{}")},
		// Envoy's parser does what RFC 9112 §5.2 allows a proxy instead of
		// a 400: it replaces the fold by spaces before it forwards, so the
		// folded line stays one field value and frames nothing.
		{name: "obs-fold header continuation (unfolded, one request)", status: 200, reaches: true, send: raw(
			login + "X-Note: first\r\n  Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}"),
			check: func(t *testing.T, seen []seenRequest) {
				r := seen[len(seen)-1]
				if te := r.Header.Values("Transfer-Encoding"); len(te) != 0 {
					t.Errorf("the service received Transfer-Encoding %q", te)
				}
				if note := r.Header.Get("X-Note"); strings.ContainsAny(note, "\r\n") || !strings.HasPrefix(note, "first") {
					t.Errorf("the service received X-Note %q", note)
				}
			}},
		// Methods outside the seven the ingress routes, each answered 405
		// by the ingress whatever the service would have done with it
		// (TRACE reflects the request; a framework may 400, 501 or 200 a
		// method it does not know).
		{name: "methods the ingress never routes (QUERY, FOO, PROPFIND, TRACE)", status: 405, send: func(t *testing.T) []response {
			var out []response
			head := " /api/users/users/42 HTTP/1.1\r\nHost: ingress\r\nAuthorization: Bearer " + validToken(t) + "\r\n"
			// QUERY carries its query in a body, as its draft has it.
			out = append(out, sendRaw(t, "QUERY"+head+"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"))
			for _, method := range []string{"FOO", "PROPFIND", "TRACE"} {
				out = append(out, sendRaw(t, method+head+"\r\n"))
			}
			return out
		}},
		{name: "bad chunk size", status: 400, send: raw(
			login + "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")},
	}

	rows := []string{fmt.Sprintf("%-62s %8s %6s %13s", "case", "requests", "status", "upstream hits")}
	for _, a := range attacks {
		t.Run(strings.NewReplacer(" ", "_", ",", "").Replace(a.name), func(t *testing.T) {
			from := len(env.users.Seen())
			got := a.send(t)
			hits, leaked := serviceHits(from)
			var statuses []string
			for _, r := range got {
				statuses = append(statuses, fmt.Sprint(r.Status))
				if r.Status != a.status {
					t.Errorf("status %d, want %d: %s", r.Status, a.status, r.Body)
					continue
				}
				if r.Status >= 400 {
					requireProblem(t, r, a.status, problem.TypeFor(a.status))
				}
			}
			rows = append(rows, fmt.Sprintf("%-62s %8d %6s %13d", a.name, len(got), strings.Join(statuses, ","), hits))
			switch {
			case a.reaches && hits != len(got):
				t.Errorf("%d of %d requests reached the service", hits, len(got))
			case !a.reaches && hits != 0:
				t.Errorf("%d requests reached the service", hits)
			}
			if a.check != nil && hits > 0 {
				a.check(t, env.users.Seen()[from:])
			}
			if len(leaked) > 0 {
				t.Errorf("the service received identity headers the client made up: %v", leaked)
			}
		})
	}
	if n := attackerFetches.Load(); n != 0 {
		t.Errorf("the ingress fetched from the attacker's server %d times", n)
	}
	t.Logf("attacks at the ingress (the attacker's key server was fetched %d times):\n%s", attackerFetches.Load(), strings.Join(rows, "\n"))
	// Nothing above broke the ingress.
	if r := get(t, "/api/users/users/42", bearer(validToken(t))); r.Status != http.StatusOK {
		t.Fatalf("after the attacks: %d %s", r.Status, r.Body)
	}
}
