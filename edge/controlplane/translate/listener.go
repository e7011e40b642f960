package translate

import (
	"fmt"
	"strings"
	"time"

	accesslog "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	mutationrules "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	streamlog "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	earlymutation "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/services/platform/contract"
)

// identityHeaderPattern matches every header that carries identity or
// routing facts the ingress vouches for; a client's copies are removed
// before anything else looks at the request.
func identityHeaderPattern() string {
	return "^" + strings.ToLower(contract.HeaderPrefix) + ".*"
}

func listener(l ir.Listener, manager *hcm.HttpConnectionManager) (*listenerv3.Listener, error) {
	cfg, err := anypb.New(manager)
	if err != nil {
		return nil, fmt.Errorf("listener: %w", err)
	}
	return &listenerv3.Listener{
		Name:    ListenerName,
		Address: socketAddress(l.Address, l.Port),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: cfg},
			}},
		}},
	}, nil
}

func httpConnectionManager(x *ir.Xds) (*hcm.HttpConnectionManager, error) {
	strip, err := typed("envoy.http.early_header_mutation.header_mutation", &earlymutation.HeaderMutation{
		Mutations: []*mutationrules.HeaderMutation{{
			Action: &mutationrules.HeaderMutation_RemoveOnMatch_{RemoveOnMatch: &mutationrules.HeaderMutation_RemoveOnMatch{
				KeyMatcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_SafeRegex{
					SafeRegex: &matcher.RegexMatcher{Regex: identityHeaderPattern()},
				}},
			}},
		}},
	})
	if err != nil {
		return nil, err
	}
	logs, err := accessLogs()
	if err != nil {
		return nil, err
	}
	replies, err := localReplies()
	if err != nil {
		return nil, err
	}
	mgr := &hcm.HttpConnectionManager{
		StatPrefix: "ingress",
		CodecType:  hcm.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
			RouteConfigName: RouteConfigName,
			ConfigSource:    adsSource(),
		}},
		EarlyHeaderMutationExtensions: []*core.TypedExtensionConfig{strip},
		AccessLog:                     logs,
		LocalReplyConfig:              replies,
		// The ingress is the edge: the client address is the peer's.
		UseRemoteAddress:             wrapperspb.Bool(true),
		NormalizePath:                wrapperspb.Bool(true),
		MergeSlashes:                 true,
		PathWithEscapedSlashesAction: hcm.HttpConnectionManager_UNESCAPE_AND_REDIRECT,
		StreamIdleTimeout:            durationpb.New(5 * time.Minute),
		RequestHeadersTimeout:        durationpb.New(10 * time.Second),
		CommonHttpProtocolOptions: &core.HttpProtocolOptions{
			IdleTimeout:                  durationpb.New(time.Minute),
			HeadersWithUnderscoresAction: core.HttpProtocolOptions_REJECT_REQUEST,
		},
		// HTTP/1's codec otherwise refuses a method it does not know
		// (QUERY among them) with a 400 before any route sees it; a
		// method is a token like any other, and the routes answer it:
		// 405 with Allow (guardroutes.go).
		HttpProtocolOptions: &core.Http1ProtocolOptions{AllowCustomMethods: true},
	}
	for _, f := range httpFeatures() {
		if err := f.patchHCM(x, mgr); err != nil {
			return nil, err
		}
	}
	// The router ends every chain.
	if err := appendFilter(mgr, "envoy.filters.http.router", &router.Router{SuppressEnvoyHeaders: true}); err != nil {
		return nil, err
	}
	return mgr, nil
}

func typed(name string, cfg proto.Message) (*core.TypedExtensionConfig, error) {
	a, err := anypb.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("extension %s: %w", name, err)
	}
	return &core.TypedExtensionConfig{Name: name, TypedConfig: a}, nil
}

// accessLogs writes one JSON object per request to stdout. trace_id is the
// trace of the request's spans when it is traced (what to look up in the
// trace backend); traceparent is what the client sent.
func accessLogs() ([]*accesslog.AccessLog, error) {
	format, err := structpb.NewStruct(map[string]any{
		"time":           "%START_TIME%",
		"request_id":     "%REQ(X-REQUEST-ID)%",
		"traceparent":    "%REQ(TRACEPARENT)%",
		"trace_id":       "%TRACE_ID%",
		"method":         "%REQ(:METHOD)%",
		"path":           "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
		"protocol":       "%PROTOCOL%",
		"status":         "%RESPONSE_CODE%",
		"flags":          "%RESPONSE_FLAGS%",
		"details":        "%RESPONSE_CODE_DETAILS%",
		"route":          "%ROUTE_NAME%",
		"upstream":       "%UPSTREAM_CLUSTER%",
		"upstream_host":  "%UPSTREAM_HOST%",
		"client":         "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
		"user_agent":     "%REQ(USER-AGENT)%",
		"bytes_received": "%BYTES_RECEIVED%",
		"bytes_sent":     "%BYTES_SENT%",
		"duration_ms":    "%DURATION%",
		"attempts":       "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
	})
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	cfg, err := anypb.New(&streamlog.StdoutAccessLog{
		AccessLogFormat: &streamlog.StdoutAccessLog_LogFormat{LogFormat: &core.SubstitutionFormatString{
			Format: &core.SubstitutionFormatString_JsonFormat{JsonFormat: format},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	return []*accesslog.AccessLog{{
		Name:       "envoy.access_loggers.stdout",
		ConfigType: &accesslog.AccessLog_TypedConfig{TypedConfig: cfg},
	}}, nil
}
