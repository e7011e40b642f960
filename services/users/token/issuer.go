package token

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// DefaultLeeway is the clock skew Verify tolerates on exp, nbf and iat when
// Config.Leeway is zero.
const DefaultLeeway = 30 * time.Second

// ErrUnknownKID is wrapped by Verify's error when the token's kid is missing
// or names no key in the keyring.
var ErrUnknownKID = errors.New("token: missing or unknown kid")

// Config configures an Issuer. Issuer, Audience and TTL are required.
type Config struct {
	Issuer   string        // "iss"; Envoy's jwt_authn provider must name the same issuer
	Audience string        // "aud"; encoded as a one-element array, the RFC 7519 general form
	TTL      time.Duration // token lifetime; retire a key no sooner than TTL+Leeway after it stops signing
	Leeway   time.Duration // clock skew allowed by Verify; 0 means DefaultLeeway

	// Now is the clock; nil means time.Now. Tests inject a fixed time.
	Now func() time.Time
	// NewID returns a unique "jti"; nil means a UUIDv7 (time-ordered, so a
	// revocation table keyed by jti indexes well).
	NewID func() (string, error)
}

// Subject is who a token is issued to.
type Subject struct {
	ID       string // "sub": the stable user id
	Username string
	Email    string
	Roles    []string
}

// Claims is the token payload: the registered claims plus the user's
// username, email and roles.
type Claims struct {
	jwt.RegisteredClaims
	Username string   `json:"username"`
	Email    string   `json:"email"`
	Roles    []string `json:"roles"`
}

// Issuer signs tokens with a keyring's signing key and verifies tokens
// against all of its keys. It is safe for concurrent use.
type Issuer struct {
	keys   *Keyring
	cfg    Config
	parser *jwt.Parser
}

// NewIssuer checks cfg, fills its defaults, and returns an Issuer using keys.
func NewIssuer(keys *Keyring, cfg Config) (*Issuer, error) {
	switch {
	case keys == nil:
		return nil, errors.New("token: issuer: nil keyring")
	case cfg.Issuer == "":
		return nil, errors.New("token: issuer: Issuer (iss) is required")
	case cfg.Audience == "":
		return nil, errors.New("token: issuer: Audience (aud) is required")
	case cfg.TTL <= 0:
		return nil, fmt.Errorf("token: issuer: TTL must be positive, got %v", cfg.TTL)
	case cfg.Leeway < 0:
		return nil, fmt.Errorf("token: issuer: Leeway must not be negative, got %v", cfg.Leeway)
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = newUUIDv7
	}
	return &Issuer{
		keys: keys,
		cfg:  cfg,
		// Built once: a Parser is read-only after construction.
		parser: jwt.NewParser(
			// Pin the algorithm: never let the token's header choose it
			// (defeats alg=none and HS256-with-the-public-key).
			jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audience),
			jwt.WithLeeway(cfg.Leeway),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithTimeFunc(cfg.Now),
		),
	}, nil
}

func newUUIDv7() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

// Keyring is the keyring the issuer signs and verifies with; serve its JWKS.
func (i *Issuer) Keyring() *Keyring { return i.keys }

// Issue signs a token for s. expiresAt is the token's exp, already truncated
// to whole seconds as encoded.
func (i *Issuer) Issue(s Subject) (token string, expiresAt time.Time, err error) {
	if s.ID == "" {
		return "", time.Time{}, errors.New("token: issue: subject ID (sub) is required")
	}
	jti, err := i.cfg.NewID()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("token: issue: generate jti: %w", err)
	}
	// JWT times are whole seconds; truncate here so the returned expiresAt is
	// exactly what the token says.
	now := i.cfg.Now().UTC().Truncate(time.Second)
	expiresAt = now.Add(i.cfg.TTL)
	roles := s.Roles
	if roles == nil {
		roles = []string{} // always a JSON array, never null
	}
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.cfg.Issuer,
			Subject:   s.ID,
			Audience:  jwt.ClaimStrings{i.cfg.Audience},
			ExpiresAt: jwt.NewNumericDate(expiresAt),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        jti,
		},
		Username: s.Username,
		Email:    s.Email,
		Roles:    roles,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims) // header: alg EdDSA, typ JWT
	t.Header["kid"] = i.keys.signerKID
	token, err = t.SignedString(i.keys.signer)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("token: issue: sign: %w", err)
	}
	return token, expiresAt, nil
}

// Verify checks a token the way the ingress does (signature by a published
// key chosen by kid, EdDSA only, iss, aud, exp required, nbf, iat, with
// leeway) and returns its claims. Errors wrap the jwt package's sentinels
// (jwt.ErrTokenExpired, ...), so callers can use errors.Is.
func (i *Issuer) Verify(token string) (*Claims, error) {
	claims := &Claims{}
	if _, err := i.parser.ParseWithClaims(token, claims, i.keyFor); err != nil {
		return nil, fmt.Errorf("token: verify: %w", err)
	}
	if claims.Subject == "" {
		return nil, errors.New("token: verify: missing sub")
	}
	return claims, nil
}

// keyFor picks the verifying key by the token's kid. A token without a kid,
// or with one we do not publish, is rejected rather than tried against every
// key: we always set kid, and so must anything we accept.
func (i *Issuer) keyFor(t *jwt.Token) (any, error) {
	kid, ok := t.Header["kid"].(string)
	if !ok || kid == "" {
		return nil, fmt.Errorf("%w: no kid header", ErrUnknownKID)
	}
	pub, ok := i.keys.PublicKey(kid)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKID, kid)
	}
	return pub, nil
}
