package translate

import (
	"fmt"
	"math"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracecfg "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tracingtag "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/edge/controlplane/xdsresources"
)

const (
	// TracingCluster reaches the OTLP/gRPC collector.
	TracingCluster = "portico-otlp"
	// Span attributes the ingress adds to every span it starts.
	tagRequestID = "request.id"
	tagRoute     = "route.name"
)

// tracer starts an OpenTelemetry span for each sampled request, and one
// for each upstream attempt, when the model has a tracer. Envoy's
// OpenTelemetry tracer speaks W3C trace context: it continues a client's
// traceparent and sends its own upstream, so the sidecars and services
// join the trace. Not a filter: it configures the connection manager, and
// each route names itself on its spans.
type tracer struct{}

func (tracer) patchHCM(x *ir.Xds, mgr *hcm.HttpConnectionManager) error {
	t := x.Tracing
	if t == nil {
		return nil
	}
	otel, err := anypb.New(&tracecfg.OpenTelemetryConfig{
		GrpcService: &core.GrpcService{
			TargetSpecifier: &core.GrpcService_EnvoyGrpc_{EnvoyGrpc: &core.GrpcService_EnvoyGrpc{ClusterName: TracingCluster}},
			// An export that hangs must not hold the batch forever; spans
			// are best effort.
			Timeout: durationpb.New(ir.DefaultConnectTimeout),
		},
		ServiceName: t.ServiceName,
	})
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	mgr.Tracing = &hcm.HttpConnectionManager_Tracing{
		RandomSampling: &typev3.Percent{Value: t.SamplingPercent},
		// A client span per upstream attempt: a retry shows as a second
		// child of the request's span, and the sidecar's span hangs under
		// the attempt that reached it.
		SpawnUpstreamSpan: wrapperspb.Bool(true),
		CustomTags: []*tracingtag.CustomTag{{
			Tag: tagRequestID,
			Type: &tracingtag.CustomTag_RequestHeader{RequestHeader: &tracingtag.CustomTag_Header{
				Name: "x-request-id",
			}},
		}},
		Provider: &tracecfg.Tracing_Http{
			Name:       "envoy.tracers.opentelemetry",
			ConfigType: &tracecfg.Tracing_Http_TypedConfig{TypedConfig: otel},
		},
	}
	return nil
}

// patchRoute names the route on its spans. Envoy 1.36 has no formatter
// tags (%ROUTE_NAME%), so each route carries its name as a literal; a
// route's tracing replaces the connection manager's sampling, so it
// repeats it.
func (tracer) patchRoute(x *ir.Xds, r ir.Route, er *route.Route) error {
	if x.Tracing == nil {
		return nil
	}
	er.Tracing = &route.Tracing{
		RandomSampling: fractionalPercent(x.Tracing.SamplingPercent),
		CustomTags: []*tracingtag.CustomTag{{
			Tag:  tagRoute,
			Type: &tracingtag.CustomTag_Literal_{Literal: &tracingtag.CustomTag_Literal{Value: r.Name}},
		}},
	}
	return nil
}

func (tracer) patchResources(x *ir.Xds, res *xdsresources.Set) error {
	if x.Tracing == nil {
		return nil
	}
	cl, err := collectorCluster(*x.Tracing)
	if err != nil {
		return err
	}
	res.Clusters = append(res.Clusters, cl)
	return nil
}

// fractionalPercent is a route's sampling in ten-thousandths (0.01 %),
// the unit Envoy samples in: it compares the request id modulo 10000 with
// the route's fraction. In millionths, that number, always below 10000,
// was below the numerator of any percent from 1 up, and every request was
// traced at "1 %".
func fractionalPercent(p float64) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{
		Numerator:   uint32(math.Round(p * 100)),
		Denominator: typev3.FractionalPercent_TEN_THOUSAND,
	}
}

// collectorCluster is the OTLP/gRPC collector, reached over plain HTTP/2
// (a collector on the host or a sidecar of its own).
func collectorCluster(t ir.Tracing) (*cluster.Cluster, error) {
	h2, err := http2Upstream()
	if err != nil {
		return nil, fmt.Errorf("tracing cluster: %w", err)
	}
	return &cluster.Cluster{
		Name:                          TracingCluster,
		ClusterDiscoveryType:          &cluster.Cluster_Type{Type: cluster.Cluster_STRICT_DNS},
		ConnectTimeout:                durationpb.New(ir.DefaultConnectTimeout),
		TypedExtensionProtocolOptions: h2,
		LoadAssignment: &endpoint.ClusterLoadAssignment{
			ClusterName: TracingCluster,
			Endpoints: []*endpoint.LocalityLbEndpoints{{LbEndpoints: []*endpoint.LbEndpoint{{
				HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: socketAddress(t.Address, t.Port)}},
			}}}},
		},
	}, nil
}
