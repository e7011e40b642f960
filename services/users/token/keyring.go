// Package token issues the Users service's access tokens (EdDSA-signed JWTs)
// and publishes the public keys that verify them as a JWKS.
//
// The ingress (Envoy jwt_authn) verifies tokens from the JWKS alone, so
// everything here sticks to the standard formats: RFC 8037 OKP keys, RFC 7638
// thumbprints as kid, and registered JWT claims.
package token

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

const (
	// privateKeySuffix marks a PKCS#8 Ed25519 private key: it verifies, and
	// the last one by file name signs.
	privateKeySuffix = ".pem"
	// publicKeySuffix marks a PKIX Ed25519 public key of a retired signing key.
	// It stays published so tokens it signed remain valid until they expire,
	// but it can never sign because the private half is gone.
	publicKeySuffix = ".pub.pem"
)

// ErrNoSigningKey is returned when a key directory holds no private key.
// LoadOrGenerate uses it to tell "empty" from "broken".
var ErrNoSigningKey = errors.New("token: no Ed25519 private key (*.pem) in key directory")

// Keyring holds one signing key and every public key that may verify a token
// (the signing key, older private keys, retired public keys). It is immutable
// after construction and safe for concurrent use.
type Keyring struct {
	signer    ed25519.PrivateKey
	signerKID string
	verifiers map[string]ed25519.PublicKey // by kid
	kids      []string                     // published order: signer first, then by kid
	jwks      []byte                       // marshaled once: it never changes
}

// NewKeyring builds a keyring that signs with signer and also verifies with
// verifyOnly (older or retired public keys). Duplicate keys are folded: the
// kid is a hash of the key, so equal kids mean the same key.
func NewKeyring(signer ed25519.PrivateKey, verifyOnly ...ed25519.PublicKey) (*Keyring, error) {
	if len(signer) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("token: signing key has %d bytes, want %d", len(signer), ed25519.PrivateKeySize)
	}
	signerPub := publicOf(signer)
	k := &Keyring{
		signer:    signer,
		signerKID: Thumbprint(signerPub),
		verifiers: map[string]ed25519.PublicKey{},
	}
	k.verifiers[k.signerKID] = signerPub
	for i, pub := range verifyOnly {
		if len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("token: verify-only key %d has %d bytes, want %d", i, len(pub), ed25519.PublicKeySize)
		}
		k.verifiers[Thumbprint(pub)] = pub
	}

	others := make([]string, 0, len(k.verifiers)-1)
	for kid := range k.verifiers {
		if kid != k.signerKID {
			others = append(others, kid)
		}
	}
	slices.Sort(others)
	// Signing key first so a consumer that naively takes keys[0] gets the
	// current one; the rest sorted so the document is byte-for-byte stable
	// across restarts and replicas (cache- and diff-friendly).
	k.kids = append([]string{k.signerKID}, others...)

	set := jwkSet{Keys: make([]jwk, 0, len(k.kids))}
	for _, kid := range k.kids {
		set.Keys = append(set.Keys, newJWK(kid, k.verifiers[kid]))
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("token: marshal JWKS: %w", err)
	}
	k.jwks = jwks
	return k, nil
}

// LoadKeyring reads every key in dir, in file-name order:
//
//   - *.pem (but not *.pub.pem): PKCS#8 "PRIVATE KEY", Ed25519. The last one by
//     name signs; the others only verify. Name keys by UTC timestamp
//     (20261125T060000Z.pem) so "last by name" means "newest".
//   - *.pub.pem: PKIX "PUBLIC KEY", Ed25519, verify-only (retired keys).
//
// Names starting with "." are skipped (lock and temp files, and the "..data"
// links of Kubernetes secret volumes); other names are ignored. Any key file
// that cannot be read or is not Ed25519 is an error naming the file: a
// half-broken key directory should stop the service, not silently drop a key.
func LoadKeyring(dir string) (*Keyring, error) {
	entries, err := os.ReadDir(dir) // sorted by file name
	if err != nil {
		return nil, fmt.Errorf("token: read key directory: %w", err)
	}
	var (
		signer     ed25519.PrivateKey
		signerFile string
		verifiers  []ed25519.PublicKey
	)
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, privateKeySuffix) {
			continue
		}
		path := filepath.Join(dir, name)
		if strings.HasSuffix(name, publicKeySuffix) {
			pub, err := readPublicKey(path)
			if err != nil {
				return nil, err
			}
			verifiers = append(verifiers, pub)
			continue
		}
		priv, err := readPrivateKey(path)
		if err != nil {
			return nil, err
		}
		if signer != nil {
			// Superseded by a later name: keep verifying what it signed.
			verifiers = append(verifiers, publicOf(signer))
		}
		signer, signerFile = priv, path
	}
	if signer == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoSigningKey, dir)
	}
	k, err := NewKeyring(signer, verifiers...)
	if err != nil {
		return nil, fmt.Errorf("token: keyring from %s: %w", signerFile, err)
	}
	return k, nil
}

// SigningKID is the kid of the key that signs new tokens.
func (k *Keyring) SigningKID() string { return k.signerKID }

// KIDs lists every published kid in JWKS order (signing key first).
func (k *Keyring) KIDs() []string { return slices.Clone(k.kids) }

// PublicKey returns the verifying key for kid, if the keyring publishes it.
func (k *Keyring) PublicKey(kid string) (ed25519.PublicKey, bool) {
	pub, ok := k.verifiers[kid]
	return pub, ok
}

// JWKS is the RFC 7517 JWK Set of every verifying key, to be served as
// application/json (e.g. at /.well-known/jwks.json). It is a copy: callers may
// keep or modify it.
func (k *Keyring) JWKS() []byte { return bytes.Clone(k.jwks) }

// Thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url without
// padding) of an Ed25519 public key, used as its kid. A content-derived kid
// needs no registry, is identical on every replica, and changes exactly when
// the key does.
func Thumbprint(pub ed25519.PublicKey) string {
	// RFC 7638 §3.2: required members only (RFC 8037 §2: crv, kty, x), in
	// lexicographic order, no whitespace. x is base64url, which never needs
	// JSON escaping, so building the string by hand is exact.
	canonical := `{"crv":"Ed25519","kty":"OKP","x":"` + b64(pub) + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return b64(sum[:])
}

// publicOf is priv's public half. Public always returns an
// ed25519.PublicKey; the checked assertion only satisfies linters.
func publicOf(priv ed25519.PrivateKey) ed25519.PublicKey {
	pub, _ := priv.Public().(ed25519.PublicKey)
	return pub
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwk is the public JWK of an Ed25519 key (RFC 8037 §2). Field order is the
// marshaled order.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

type jwkSet struct {
	Keys []jwk `json:"keys"`
}

func newJWK(kid string, pub ed25519.PublicKey) jwk {
	return jwk{Kty: "OKP", Crv: "Ed25519", X: b64(pub), Kid: kid, Use: "sig", Alg: "EdDSA"}
}

func readPrivateKey(path string) (ed25519.PrivateKey, error) {
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("token: key file %s: parse PKCS#8 private key: %w", path, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("token: key file %s: %T is not an Ed25519 private key", path, key)
	}
	return priv, nil
}

func readPublicKey(path string) (ed25519.PublicKey, error) {
	der, err := readPEM(path, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("token: key file %s: parse PKIX public key: %w", path, err)
	}
	pub, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("token: key file %s: %T is not an Ed25519 public key", path, key)
	}
	return pub, nil
}

// readPEM returns the DER of the single PEM block of type typ in path.
// Trailing data is rejected: two keys concatenated into one file would
// otherwise silently lose the second.
func readPEM(path, typ string) ([]byte, error) {
	// Read with os, not os.Root: key files may be symlinks out of the
	// directory (secret mounts), and the directory is operator-configured.
	data, err := os.ReadFile(path) //nolint:gosec // G703: path is a file in the configured key directory.
	if err != nil {
		return nil, fmt.Errorf("token: key file %s: %w", path, err)
	}
	block, rest := pem.Decode(data)
	switch {
	case block == nil:
		return nil, fmt.Errorf("token: key file %s: no PEM block", path)
	case block.Type != typ:
		return nil, fmt.Errorf("token: key file %s: PEM type %q, want %q", path, block.Type, typ)
	case len(bytes.TrimSpace(rest)) != 0:
		return nil, fmt.Errorf("token: key file %s: unexpected data after the PEM block", path)
	}
	return block.Bytes, nil
}
