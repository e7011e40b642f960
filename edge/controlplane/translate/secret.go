package translate

import (
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/portico-mesh/portico/edge/controlplane/ir"
)

// secrets are served by SDS, so a rotated leaf certificate or a new CA
// root reaches Envoy without touching listeners or clusters.
func secrets(id ir.Identity) []types.Resource {
	return []types.Resource{
		&tlsv3.Secret{
			Name: LeafSecretName,
			Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: inline(id.CertPEM),
				PrivateKey:       inline(id.KeyPEM),
			}},
		},
		&tlsv3.Secret{
			Name: RootsSecretName,
			Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: inline(strings.Join(id.RootsPEM, "\n")),
			}},
		},
	}
}

func inline(s string) *core.DataSource {
	return &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: s}}
}

// sdsFromADS points a TLS context at a secret on the same ADS stream.
func sdsFromADS(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: adsSource()}
}

func adsSource() *core.ConfigSource {
	return &core.ConfigSource{
		ResourceApiVersion:    core.ApiVersion_V3,
		ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
	}
}
