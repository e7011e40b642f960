package translate

import (
	"math"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwt "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/edge/controlplane/xdsresources"
	"github.com/portico-mesh/portico/services/platform/contract"
)

const (
	jwtProvider    = "portico"
	jwtRequirement = "token"
)

const jwtFilterName = "envoy.filters.http.jwt_authn"

// jwtAuthn verifies bearer tokens against the users service's key set,
// fetched through the mesh, when the model has auth. Every route requires
// a token unless its per-route config disables the check (public routes).
type jwtAuthn struct{}

func (jwtAuthn) patchHCM(x *ir.Xds, mgr *hcm.HttpConnectionManager) error {
	if x.Auth == nil {
		return nil
	}
	return appendFilter(mgr, jwtFilterName, jwtAuthentication(x.Auth))
}

func (jwtAuthn) patchRoute(x *ir.Xds, r ir.Route, er *route.Route) error {
	if x.Auth == nil {
		return nil
	}
	return setPerRoute(er, jwtFilterName, jwtPerRoute(r.Public))
}

// patchResources adds nothing: the key set's cluster is a mesh service
// the model already lists.
func (jwtAuthn) patchResources(*ir.Xds, *xdsresources.Set) error { return nil }

// jwtCacheSize is how many verified tokens each Envoy worker remembers:
// about one per active client.
const jwtCacheSize = 1024

func jwtAuthentication(a *ir.Auth) *jwt.JwtAuthentication {
	provider := &jwt.JwtProvider{
		Issuer:    a.Issuer,
		Audiences: a.Audiences,
		JwksSourceSpecifier: &jwt.JwtProvider_RemoteJwks{RemoteJwks: &jwt.RemoteJwks{
			HttpUri: &core.HttpUri{
				Uri:              "http://" + a.JWKSCluster + a.JWKSPath,
				HttpUpstreamType: &core.HttpUri_Cluster{Cluster: a.JWKSCluster},
				Timeout:          durationpb.New(ir.DefaultConnectTimeout * 2),
			},
			CacheDuration: durationpb.New(a.Refresh),
			// Fetch at start and on expiry, not on the first request, so a
			// key set that cannot be fetched shows at once.
			AsyncFetch: &jwt.JwksAsyncFetch{FastListener: true},
		}},
		ClockSkewSeconds:  uint32(math.Ceil(a.ClockSkew.Seconds())),
		RequireExpiration: true,
		// The token stays with the request: services may read it, but they
		// trust only the identity headers the ingress sets.
		Forward: true,
		// A client sends the same token for its whole lifetime: a token
		// verified once is remembered (per worker, until its exp, which is
		// checked on every hit) instead of checking the Ed25519 signature
		// per request. A key withdrawn from the key set thus stops tokens
		// already seen only at their expiry (JWT_TTL, 15 minutes), as a key
		// rotation, which keeps the old key published, does anyway.
		JwtCacheConfig: &jwt.JwtCacheConfig{JwtCacheSize: jwtCacheSize},
	}
	for _, c := range contract.ClaimHeaders() {
		provider.ClaimToHeaders = append(provider.ClaimToHeaders, &jwt.JwtClaimToHeader{ClaimName: c.Claim, HeaderName: strings.ToLower(c.Header)})
	}
	return &jwt.JwtAuthentication{
		Providers: map[string]*jwt.JwtProvider{jwtProvider: provider},
		RequirementMap: map[string]*jwt.JwtRequirement{
			jwtRequirement: {RequiresType: &jwt.JwtRequirement_ProviderName{ProviderName: jwtProvider}},
		},
	}
}

// jwtPerRoute selects the token requirement, or disables it on a public route.
func jwtPerRoute(public bool) *jwt.PerRouteConfig {
	if public {
		return &jwt.PerRouteConfig{RequirementSpecifier: &jwt.PerRouteConfig_Disabled{Disabled: true}}
	}
	return &jwt.PerRouteConfig{RequirementSpecifier: &jwt.PerRouteConfig_RequirementName{RequirementName: jwtRequirement}}
}
