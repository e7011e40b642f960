package token

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
)

// RFC 8037 Appendix A.1 (key) and A.3 (its RFC 7638 thumbprint).
const (
	rfc8037D          = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
	rfc8037X          = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
	rfc8037Thumbprint = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
)

func rfc8037Key(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	seed, err := base64.RawURLEncoding.DecodeString(rfc8037D)
	if err != nil {
		t.Fatal(err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	if got := base64.RawURLEncoding.EncodeToString(pubOf(priv)); got != rfc8037X {
		t.Fatalf("RFC 8037 A.1 seed gives x=%s, want %s", got, rfc8037X)
	}
	return priv
}

func TestThumbprintMatchesRFC8037Example(t *testing.T) {
	x, err := base64.RawURLEncoding.DecodeString(rfc8037X)
	if err != nil {
		t.Fatal(err)
	}
	// Independent computation: encoding/json sorts map keys and adds no
	// whitespace, which is exactly RFC 7638's canonical form.
	canonical, err := json.Marshal(map[string]string{"kty": "OKP", "crv": "Ed25519", "x": rfc8037X})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(canonical)
	if independent := base64.RawURLEncoding.EncodeToString(sum[:]); independent != rfc8037Thumbprint {
		t.Fatalf("independent thumbprint %s, RFC says %s (canonical %s)", independent, rfc8037Thumbprint, canonical)
	}
	if got := Thumbprint(ed25519.PublicKey(x)); got != rfc8037Thumbprint {
		t.Errorf("Thumbprint = %s, want %s", got, rfc8037Thumbprint)
	}
}

func TestLoadedKeyKIDIsThumbprint(t *testing.T) {
	dir := t.TempDir()
	writePrivate(t, dir, "20261125T060000Z.pem", rfc8037Key(t))
	kr, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	if kr.SigningKID() != rfc8037Thumbprint {
		t.Errorf("SigningKID = %s, want %s", kr.SigningKID(), rfc8037Thumbprint)
	}
}

// The loaded key signs plain Ed25519 (not Ed25519ph etc.): RFC 8037 A.4's
// signature is deterministic, so it must be reproduced exactly.
func TestSigningMatchesRFC8037Example(t *testing.T) {
	const (
		input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
		sig   = "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
	)
	dir := t.TempDir()
	writePrivate(t, dir, "k.pem", rfc8037Key(t))
	kr, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := jwt.SigningMethodEdDSA.Sign(input, kr.signer)
	if err != nil {
		t.Fatal(err)
	}
	if b64(got) != sig {
		t.Errorf("signature %s, want %s", b64(got), sig)
	}
}

func TestJWKSFormat(t *testing.T) {
	kr := mustKeyring(t, rfc8037Key(t))
	want := `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + rfc8037X + `","kid":"` + rfc8037Thumbprint + `","use":"sig","alg":"EdDSA"}]}`
	if got := string(kr.JWKS()); got != want {
		t.Errorf("JWKS:\n got %s\nwant %s", got, want)
	}
	if bytes.Contains(kr.JWKS(), []byte(`"d"`)) {
		t.Error("JWKS leaks the private key")
	}

	// A copy: a caller scribbling on it cannot change what others serve.
	j := kr.JWKS()
	j[0] = 'X'
	if got := string(kr.JWKS()); got != want {
		t.Errorf("JWKS changed after modifying a returned copy: %s", got)
	}
}

func TestJWKSOrderIsSignerThenKIDAndStable(t *testing.T) {
	signer := newKey(t)
	others := []ed25519.PublicKey{pubOf(newKey(t)), pubOf(newKey(t)), pubOf(newKey(t))}
	kr := mustKeyring(t, signer, others...)

	var want []string
	for _, p := range others {
		want = append(want, Thumbprint(p))
	}
	// Expected: signer, then the others sorted by kid.
	slices.Sort(want)
	want = append([]string{Thumbprint(pubOf(signer))}, want...)

	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(kr.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range set.Keys {
		got = append(got, k.Kid)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("JWKS kid order (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, kr.KIDs()); diff != "" {
		t.Errorf("KIDs (-want +got):\n%s", diff)
	}

	// Same keys in another order: same bytes (replicas agree).
	again := mustKeyring(t, signer, others[2], others[0], others[1])
	if !bytes.Equal(kr.JWKS(), again.JWKS()) {
		t.Errorf("JWKS depends on input order:\n%s\n%s", kr.JWKS(), again.JWKS())
	}
}

func TestNewKeyringFoldsDuplicates(t *testing.T) {
	signer, other := newKey(t), newKey(t)
	kr := mustKeyring(t, signer, pubOf(signer), pubOf(other), pubOf(other))
	if got := len(kr.KIDs()); got != 2 {
		t.Errorf("%d kids, want 2: %v", got, kr.KIDs())
	}
}

func TestNewKeyringRejectsBadKeys(t *testing.T) {
	if _, err := NewKeyring(nil); err == nil {
		t.Error("nil signer accepted")
	}
	if _, err := NewKeyring(newKey(t), ed25519.PublicKey{1, 2, 3}); err == nil {
		t.Error("short verify-only key accepted")
	}
}

func TestLoadKeyringIgnoresOtherFiles(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	writePrivate(t, dir, "20261125T060000Z.pem", key)
	for name, content := range map[string]string{
		"README.md":             "not a key",
		"notes.txt":             "-----BEGIN NOTHING-----",
		".keygen.lock":          "pid 1",
		".20261125T070000Z.pem": "half-written temp file",
		".hidden.pub.pem":       "garbage",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	kr, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{Thumbprint(pubOf(key))}, kr.KIDs()); diff != "" {
		t.Errorf("KIDs (-want +got):\n%s", diff)
	}
}

func TestLoadKeyringErrors(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519Key, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed := newKey(t)

	tests := []struct {
		name string
		// setup writes the offending file into dir (next to a good key)
		// and returns its name, which the error must mention.
		setup func(t *testing.T, dir string) string
	}{
		{"ECDSA private key", func(t *testing.T, dir string) string {
			return filepath.Base(writePrivate(t, dir, "z-ecdsa.pem", ecKey))
		}},
		{"X25519 private key (OKP but not Ed25519)", func(t *testing.T, dir string) string {
			return filepath.Base(writePrivate(t, dir, "z-x25519.pem", x25519Key))
		}},
		{"ECDSA public key", func(t *testing.T, dir string) string {
			return filepath.Base(writePublic(t, dir, "z-ecdsa.pub.pem", &ecKey.PublicKey))
		}},
		{"public key in private key file", func(t *testing.T, dir string) string {
			return filepath.Base(writePublic(t, dir, "z-pub.pem", pubOf(ed)))
		}},
		{"private key in public key file", func(t *testing.T, dir string) string {
			return filepath.Base(writePrivate(t, dir, "z-priv.pub.pem", ed))
		}},
		{"not PEM", func(t *testing.T, dir string) string {
			return writeRaw(t, dir, "z-garbage.pem", "hello")
		}},
		{"empty file", func(t *testing.T, dir string) string {
			return writeRaw(t, dir, "z-empty.pem", "")
		}},
		{"PEM with bad DER", func(t *testing.T, dir string) string {
			return filepath.Base(writePEM(t, dir, "z-der.pem", "PRIVATE KEY", []byte{0x30, 0x03, 1, 2, 3}))
		}},
		{"two keys in one file", func(t *testing.T, dir string) string {
			name := "z-two.pem"
			writePrivate(t, dir, name, ed)
			first, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			return writeRaw(t, dir, name, string(first)+string(first))
		}},
		{"unreadable (a directory named *.pem)", func(t *testing.T, dir string) string {
			if err := os.Mkdir(filepath.Join(dir, "z-dir.pem"), 0o700); err != nil {
				t.Fatal(err)
			}
			return "z-dir.pem"
		}},
		{"dangling symlink", func(t *testing.T, dir string) string {
			if err := os.Symlink(filepath.Join(dir, "missing"), filepath.Join(dir, "z-link.pem")); err != nil {
				t.Fatal("symlink:", err)
			}
			return "z-link.pem"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writePrivate(t, dir, "a-good.pem", newKey(t))
			bad := tt.setup(t, dir)
			kr, err := LoadKeyring(dir)
			if err == nil {
				t.Fatalf("loaded keyring %v, want error", kr.KIDs())
			}
			if !strings.Contains(err.Error(), bad) {
				t.Errorf("error %q does not name %s", err, bad)
			}
		})
	}
}

func TestLoadKeyringWithoutPrivateKey(t *testing.T) {
	t.Run("empty dir", func(t *testing.T) {
		if _, err := LoadKeyring(t.TempDir()); !errors.Is(err, ErrNoSigningKey) {
			t.Errorf("err = %v, want ErrNoSigningKey", err)
		}
	})
	t.Run("only public keys", func(t *testing.T) {
		dir := t.TempDir()
		writePublic(t, dir, "20261125T060000Z.pub.pem", pubOf(newKey(t)))
		if _, err := LoadKeyring(dir); !errors.Is(err, ErrNoSigningKey) {
			t.Errorf("err = %v, want ErrNoSigningKey", err)
		}
	})
	t.Run("missing dir", func(t *testing.T) {
		_, err := LoadKeyring(filepath.Join(t.TempDir(), "nope"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v, want fs.ErrNotExist", err)
		}
	})
}

func writeRaw(t *testing.T, dir, name, content string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// The README's openssl commands produce files LoadKeyring accepts, and the
// kid is the same one the JWKS consumer computes.
func TestLoadsOpenSSLKeys(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl not installed (make deps installs it)")
	}
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(openssl, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	run("genpkey", "-algorithm", "ed25519", "-out", "20250101T000000Z.pem")
	run("genpkey", "-algorithm", "ed25519", "-out", "20260101T000000Z.pem")
	// Retire the older key: keep only its public half.
	run("pkey", "-in", "20250101T000000Z.pem", "-pubout", "-out", "20250101T000000Z.pub.pem")
	if err := os.Remove(filepath.Join(dir, "20250101T000000Z.pem")); err != nil {
		t.Fatal(err)
	}

	kr, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	newest, err := readPrivateKey(filepath.Join(dir, "20260101T000000Z.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if kr.SigningKID() != Thumbprint(pubOf(newest)) || len(kr.KIDs()) != 2 {
		t.Errorf("signing %s of %v, want %s and the retired key", kr.SigningKID(), kr.KIDs(), Thumbprint(pubOf(newest)))
	}
}
