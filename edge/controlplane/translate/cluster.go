package translate

import (
	"fmt"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/portico-mesh/portico/edge/controlplane/ir"
)

// meshCluster reaches one service's sidecars over Connect mTLS. The
// ingress presents its own leaf certificate, so intentions apply to it,
// and accepts only the sidecar whose SPIFFE identity is the service's.
func meshCluster(c ir.Cluster) (*cluster.Cluster, error) {
	tlsCtx, err := anypb.New(&tlsv3.UpstreamTlsContext{
		Sni: c.SNI,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:                      &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsFromADS(LeafSecretName)},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext: &tlsv3.CertificateValidationContext{
						MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
							SanType: tlsv3.SubjectAltNameMatcher_URI,
							Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: c.SpiffeID}},
						}},
					},
					ValidationContextSdsSecretConfig: sdsFromADS(RootsSecretName),
				},
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	h2, err := http2Upstream()
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	return &cluster.Cluster{
		Name:                          c.Name,
		TypedExtensionProtocolOptions: h2,
		ClusterDiscoveryType:          &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
		EdsClusterConfig:              &cluster.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
		ConnectTimeout:                durationpb.New(c.ConnectTimeout),
		LbPolicy:                      cluster.Cluster_LEAST_REQUEST,
		TransportSocket: &core.TransportSocket{
			Name:       "envoy.transport_sockets.tls",
			ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: tlsCtx},
		},
		OutlierDetection: outlierDetection(c.Outlier),
		CommonLbConfig: &cluster.Cluster_CommonLbConfig{
			// Panic routing sends traffic to every instance, ejected or
			// not, once half of them are out: with two instances, one
			// ejection. maxEjectionPercent bounds ejection instead.
			HealthyPanicThreshold: &typev3.Percent{Value: 0},
			// Envoy holds host-set changes, ejections included, for a 1s
			// merge window by default: measured, a failing instance kept
			// answering about 150 requests after its ejection.
			UpdateMergeWindow: durationpb.New(0),
		},
		CircuitBreakers: circuitBreakers(c),
	}, nil
}

// http2Upstream has Envoy speak HTTP/2 to a cluster: every request of a
// worker is a stream on one connection.
//
// To a sidecar this matters under load. Over HTTP/1.1 Envoy opens another
// connection whenever all are busy, and each costs a TLS handshake on both
// Envoys: measured with make bench, a burst beyond capacity grew the pool
// to 1024 mTLS connections and the handshakes kept both Envoys saturated
// after the burst. A Consul sidecar's public listener detects the codec
// (codec_type AUTO): without ALPN in the handshake (its ALPN list offers
// only http/1.1, so none is sent here) it reads the HTTP/2 preface, and it
// still speaks HTTP/1.1 to its service.
func http2Upstream() (map[string]*anypb.Any, error) {
	opts, err := anypb.New(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &core.Http2ProtocolOptions{},
				},
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("http/2 options: %w", err)
	}
	return map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": opts}, nil
}

// outlierDetection ejects an instance after consecutive 5xx or gateway
// errors; the enforcement percentages are explicit because Envoy's
// defaults leave gateway-error ejection off. Errors of the service and
// errors reaching it are counted apart: otherwise every successful new
// connection counts as a success and resets the count of 5xx answers, so
// an instance that accepts connections but fails every request is never
// ejected.
func outlierDetection(o ir.Outlier) *cluster.OutlierDetection {
	return &cluster.OutlierDetection{
		SplitExternalLocalOriginErrors:         true,
		ConsecutiveLocalOriginFailure:          wrapperspb.UInt32(o.ConsecutiveGatewayErrors),
		EnforcingConsecutiveLocalOriginFailure: wrapperspb.UInt32(100),
		Consecutive_5Xx:                        wrapperspb.UInt32(o.Consecutive5xx),
		ConsecutiveGatewayFailure:              wrapperspb.UInt32(o.ConsecutiveGatewayErrors),
		EnforcingConsecutive_5Xx:               wrapperspb.UInt32(100),
		EnforcingConsecutiveGatewayFailure:     wrapperspb.UInt32(100),
		// Success-rate ejection needs more traffic than a small mesh has.
		EnforcingSuccessRate: wrapperspb.UInt32(0),
		Interval:             durationpb.New(o.Interval),
		BaseEjectionTime:     durationpb.New(o.BaseEjectionTime),
		MaxEjectionPercent:   wrapperspb.UInt32(o.MaxEjectionPercent),
	}
}

func circuitBreakers(c ir.Cluster) *cluster.CircuitBreakers {
	cb := c.CircuitBreaker
	t := &cluster.CircuitBreakers_Thresholds{
		Priority:           core.RoutingPriority_DEFAULT,
		MaxConnections:     wrapperspb.UInt32(cb.MaxConnections),
		MaxPendingRequests: wrapperspb.UInt32(cb.MaxPendingRequests),
		MaxRequests:        wrapperspb.UInt32(cb.MaxRequests),
	}
	if c.RetryBudgetPercent > 0 {
		t.RetryBudget = &cluster.CircuitBreakers_Thresholds_RetryBudget{
			BudgetPercent: &typev3.Percent{Value: c.RetryBudgetPercent},
			// Lets a lightly loaded service still retry at all.
			MinRetryConcurrency: wrapperspb.UInt32(3),
		}
	}
	return &cluster.CircuitBreakers{Thresholds: []*cluster.CircuitBreakers_Thresholds{t}}
}
