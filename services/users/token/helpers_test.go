package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// t0 is the fixed "now" of most tests.
var t0 = time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func pubOf(priv ed25519.PrivateKey) ed25519.PublicKey { return publicOf(priv) }

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writePrivate writes any private key as PKCS#8, the way
// `openssl genpkey -algorithm ed25519` does.
func writePrivate(t *testing.T, dir, name string, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, name, "PRIVATE KEY", der)
}

// writePublic writes any public key as PKIX, the way `openssl pkey -pubout`
// does.
func writePublic(t *testing.T, dir, name string, key any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, name, "PUBLIC KEY", der)
}

func testConfig(now time.Time) Config {
	return Config{
		Issuer:   "https://users.portico.test",
		Audience: "portico-api",
		TTL:      15 * time.Minute,
		Now:      fixedClock(now),
	}
}

func mustIssuer(t *testing.T, kr *Keyring, cfg Config) *Issuer {
	t.Helper()
	iss, err := NewIssuer(kr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func mustKeyring(t *testing.T, signer ed25519.PrivateKey, verifyOnly ...ed25519.PublicKey) *Keyring {
	t.Helper()
	kr, err := NewKeyring(signer, verifyOnly...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func mustIssue(t *testing.T, iss *Issuer, s Subject) string {
	t.Helper()
	tok, _, err := iss.Issue(s)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// segment decodes part i (0 header, 1 payload) of a compact JWS as generic
// JSON, independently of the jwt package.
func segment(t *testing.T, tok string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatalf("segment %d: %v", i, err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("segment %d: %v", i, err)
	}
	return m
}

// signRaw builds a compact JWS from an arbitrary header and claims, signed by
// sign (nil: empty signature), to craft tokens Issue never would.
func signRaw(t *testing.T, header, claims map[string]any, sign func(input string) []byte) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(header) + "." + enc(claims)
	var sig []byte
	if sign != nil {
		sig = sign(input)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func ed25519Signer(priv ed25519.PrivateKey) func(string) []byte {
	return func(input string) []byte { return ed25519.Sign(priv, []byte(input)) }
}

// validClaims are claims that would pass Verify with testConfig(t0).
func validClaims() map[string]any {
	return map[string]any{
		"iss":      "https://users.portico.test",
		"aud":      []string{"portico-api"},
		"sub":      "user-1",
		"iat":      t0.Unix(),
		"nbf":      t0.Unix(),
		"exp":      t0.Add(15 * time.Minute).Unix(),
		"jti":      "0193a0b8-0000-7000-8000-000000000000",
		"username": "ada",
		"email":    "ada@example.test",
		"roles":    []string{"admin"},
	}
}

func edHeader(kid string) map[string]any {
	return map[string]any{"alg": jwt.SigningMethodEdDSA.Alg(), "typ": "JWT", "kid": kid}
}
