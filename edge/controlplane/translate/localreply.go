package translate

import (
	"fmt"

	accesslog "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// problem is how a reply the ingress makes itself is described to clients:
// the same RFC 9457 types the services use.
type problem struct {
	status uint32
	kind   string
	title  string
	// as replaces the status; the ingress itself refuses only tokens, and
	// a token refused for its audience (which jwt_authn answers with 403)
	// is as unauthenticated as any other bad token.
	as uint32
	// detail replaces the filter's own text (the body of the local reply)
	// when that text says nothing a client can act on.
	detail string
	// retryAfter sets Retry-After where the refusing filter gave none.
	retryAfter bool
}

// rateLimitedDetail is the detail of every 429, local or global: the
// refusing filters' own bodies are "local_rate_limited" and empty.
const rateLimitedDetail = "Too many requests for this route; retry after the number of seconds in Retry-After."

// retryAfterFromReset is Retry-After for a refusal of the global rate
// limit: the rate-limit filter sets X-RateLimit-Reset on its 429 (the
// whole seconds until the service's counting window ends) but no
// Retry-After. A local bucket's refusal already carries Retry-After (its
// refill interval), and the header is added only where absent; where
// neither exists the formatter gives an empty value and no header is set.
const retryAfterFromReset = "%RESP(X-RATELIMIT-RESET)%"

// problems lists the statuses the ingress answers on its own, sorted.
var problems = []problem{
	{status: 400, kind: "malformed-request", title: "Bad Request"},
	{status: 401, kind: "unauthenticated", title: "Unauthorized"},
	{status: 403, kind: "unauthenticated", title: "Unauthorized", as: 401},
	{status: 404, kind: "not-found", title: "Not Found"},
	{status: 413, kind: "payload-too-large", title: "Content Too Large"},
	{status: 429, kind: "rate-limited", title: "Too Many Requests", detail: rateLimitedDetail, retryAfter: true},
	{status: 431, kind: "malformed-request", title: "Request Header Fields Too Large"},
	{status: 502, kind: "unavailable", title: "Bad Gateway"},
	{status: 503, kind: "unavailable", title: "Service Unavailable"},
	{status: 504, kind: "unavailable", title: "Gateway Timeout"},
}

// localReplies rewrites every reply Envoy generates itself (a failed token
// check, a rate limit, no healthy instance, an unknown path) into
// application/problem+json. Responses from services are never touched.
func localReplies() (*hcm.LocalReplyConfig, error) {
	cfg := &hcm.LocalReplyConfig{}
	for _, p := range problems {
		var status any = "%RESPONSE_CODE%"
		// Errors are never stored, and are marked so as the services mark
		// theirs: their documents declare Cache-Control on every answer,
		// including the 401 the ingress gives in their place.
		headers := []*core.HeaderValueOption{{
			Header:       &core.HeaderValue{Key: "cache-control", Value: "no-store"},
			AppendAction: core.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}}
		if p.as != 0 {
			status = float64(p.as)
			headers = append(headers, &core.HeaderValueOption{
				Header:       &core.HeaderValue{Key: "www-authenticate", Value: `Bearer error="invalid_token"`},
				AppendAction: core.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			})
		}
		if p.retryAfter {
			headers = append(headers, &core.HeaderValueOption{
				Header:       &core.HeaderValue{Key: "retry-after", Value: retryAfterFromReset},
				AppendAction: core.HeaderValueOption_ADD_IF_ABSENT,
			})
		}
		detail := "%LOCAL_REPLY_BODY%"
		if p.detail != "" {
			detail = p.detail
		}
		body, err := structpb.NewStruct(map[string]any{
			"type":       "urn:portico:problem:" + p.kind,
			"title":      p.title,
			"status":     status,
			"detail":     detail,
			"instance":   "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
			"request_id": "%REQ(X-REQUEST-ID)%",
		})
		if err != nil {
			return nil, fmt.Errorf("local reply %d: %w", p.status, err)
		}
		m := &hcm.ResponseMapper{
			Filter: &accesslog.AccessLogFilter{FilterSpecifier: &accesslog.AccessLogFilter_StatusCodeFilter{
				StatusCodeFilter: &accesslog.StatusCodeFilter{Comparison: &accesslog.ComparisonFilter{
					Op:    accesslog.ComparisonFilter_EQ,
					Value: &core.RuntimeUInt32{DefaultValue: p.status, RuntimeKey: fmt.Sprintf("portico.local_reply.%d", p.status)},
				}},
			}},
			StatusCode:   statusOverride(p.as),
			HeadersToAdd: headers,
			BodyFormatOverride: &core.SubstitutionFormatString{
				Format:      &core.SubstitutionFormatString_JsonFormat{JsonFormat: body},
				ContentType: "application/problem+json",
			},
		}
		cfg.Mappers = append(cfg.Mappers, m)
	}
	return cfg, nil
}

func statusOverride(status uint32) *wrapperspb.UInt32Value {
	if status == 0 {
		return nil
	}
	return wrapperspb.UInt32(status)
}
