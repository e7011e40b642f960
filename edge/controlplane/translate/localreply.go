package translate

import (
	"fmt"
	"net/http"

	accesslog "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	celfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/portico-mesh/portico/services/platform/contract"
	"github.com/portico-mesh/portico/services/platform/problem"
)

// localReply is how one status the ingress answers on its own is described
// to clients: the same RFC 9457 types the services use, from
// problem.TypeFor, with http.StatusText as the title.
type localReply struct {
	status uint32
	// as replaces the status; the ingress itself refuses only tokens, and
	// a token refused for its audience (which jwt_authn answers with 403)
	// is as unauthenticated as any other bad token.
	as uint32
	// detail replaces the filter's own text (the body of the local reply),
	// which is empty or names Envoy's internals (a reset reason, a
	// cluster); empty keeps that text, for the token check's, which says
	// what is wrong with the token and nothing about the ingress.
	detail string
	// retryAfter sets Retry-After where the refusing filter gave none.
	retryAfter bool
	// challenge sets WWW-Authenticate (RFC 9110 §11.6.1) where the
	// refusing filter gave none; overwrite replaces the filter's.
	challenge string
	overwrite bool
	// tokenCheck limits the mapping to the token check's own replies
	// (jwt_authn's response code details); a reply of the same status
	// from elsewhere falls to the next mapping.
	tokenCheck bool
}

// The details of the replies the ingress makes. They say what a client
// can do, never which instance or connection failed (the access log and
// request_id do that).
const (
	// rateLimitedDetail is the detail of every 429, local or global: the
	// refusing filters' own bodies are "local_rate_limited" and empty.
	rateLimitedDetail    = "Too many requests for this route; retry after the number of seconds in Retry-After."
	malformedDetail      = "The request is not well-formed HTTP, or uses a form the ingress refuses."
	forbiddenDetail      = "Access to this service is not allowed."
	notFoundDetail       = "No route matches this path."
	methodDetail         = "This path does not accept this method; Allow lists the methods it does."
	timeoutDetail        = "The request was not received in time."
	upgradeDetail        = "HTTP/1.1 or later is required."
	headersDetail        = "The request's header fields (the token among them) are larger than the ingress accepts."
	internalDetail       = "The request failed on the way; the logs have the cause under request_id."
	notImplDetail        = "The request uses a transfer coding or method the ingress does not support."
	badGatewayDetail     = "The service answered with something that is not a valid response; retry later."
	unavailableDetail    = "The service is unavailable at the moment; retry later."
	gatewayTimeoutDetail = "The service did not answer in time; retry later."
	clientErrorDetail    = "The ingress refused the request."
	serverErrorDetail    = "The ingress could not complete the request; retry later."
)

// bearerChallenge is the challenge of every 401: jwt_authn sets its own
// (with a realm) on its 401s; a 403 it turns into a 401 gets this.
const bearerChallenge = `Bearer error="invalid_token"` //nolint:gosec // an auth scheme, not a credential

// retryAfterFromReset is Retry-After for a refusal of the global rate
// limit: the rate-limit filter sets X-RateLimit-Reset on its 429 (the
// whole seconds until the service's counting window ends) but no
// Retry-After. A local bucket's refusal already carries Retry-After (its
// refill interval), and the header is added only where absent; where
// neither exists the formatter gives an empty value and no header is set.
const retryAfterFromReset = "%RESP(X-RATELIMIT-RESET)%"

// ingressReplies lists every status Envoy answers on its own, sorted:
// codec errors (400, 408, 426, 431, 501), the token check (401, 403), no
// route and the hidden paths (404), the guard routes (405, 413), the rate
// limits (429), and upstream failures (500, 502, 503, 504). A sidecar's
// errors pass here too (upstreamErrors): its 403, an intention's denial,
// is forbidden, not a refused token.
var ingressReplies = []localReply{
	{status: 400, detail: malformedDetail},
	{status: 401, challenge: "Bearer"},
	{status: 403, as: 401, challenge: bearerChallenge, overwrite: true, tokenCheck: true},
	{status: 403, detail: forbiddenDetail},
	{status: 404, detail: notFoundDetail},
	{status: 405, detail: methodDetail},
	{status: 408, detail: timeoutDetail},
	{status: 413, detail: fmt.Sprintf("The request body is larger than the %d bytes the API accepts.", contract.MaxRequestBody)},
	{status: 426, detail: upgradeDetail},
	{status: 429, detail: rateLimitedDetail, retryAfter: true},
	{status: 431, detail: headersDetail},
	{status: 500, detail: internalDetail},
	{status: 501, detail: notImplDetail},
	{status: 502, detail: badGatewayDetail},
	{status: 503, detail: unavailableDetail},
	{status: 504, detail: gatewayTimeoutDetail},
}

// localReplies rewrites every reply Envoy generates itself (a failed
// token check, a rate limit, no healthy instance, an unknown path, a codec
// error) into application/problem+json. Responses from services are never
// touched here (upstreamErrors covers the sidecars' own).
func localReplies() (*hcm.LocalReplyConfig, error) {
	cfg := &hcm.LocalReplyConfig{}
	for _, r := range ingressReplies {
		m, err := localReplyMapper(r)
		if err != nil {
			return nil, err
		}
		cfg.Mappers = append(cfg.Mappers, m)
	}
	// Whatever status a later Envoy adds still gets a problem body.
	for _, c := range []struct {
		low, high uint32
		typ       string
		title     string
		detail    string
	}{
		{400, 499, problem.TypeMalformed, "Client Error", clientErrorDetail},
		{500, 599, problem.TypeInternal, "Server Error", serverErrorDetail},
	} {
		body, err := problemFormat(c.typ, c.title, "%RESPONSE_CODE%", c.detail)
		if err != nil {
			return nil, err
		}
		cfg.Mappers = append(cfg.Mappers, &hcm.ResponseMapper{
			Filter: &accesslog.AccessLogFilter{FilterSpecifier: &accesslog.AccessLogFilter_AndFilter{AndFilter: &accesslog.AndFilter{
				Filters: []*accesslog.AccessLogFilter{
					statusFilter(accesslog.ComparisonFilter_GE, c.low),
					statusFilter(accesslog.ComparisonFilter_LE, c.high),
				},
			}}},
			HeadersToAdd:       []*core.HeaderValueOption{noStoreHeader()},
			BodyFormatOverride: body,
		})
	}
	return cfg, nil
}

func localReplyMapper(r localReply) (*hcm.ResponseMapper, error) {
	shown := r.status
	var status any = "%RESPONSE_CODE%"
	if r.as != 0 {
		shown = r.as
		status = float64(r.as)
	}
	headers := []*core.HeaderValueOption{noStoreHeader()}
	if r.challenge != "" {
		action := core.HeaderValueOption_ADD_IF_ABSENT
		if r.overwrite {
			action = core.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		}
		headers = append(headers, &core.HeaderValueOption{
			Header:       &core.HeaderValue{Key: "www-authenticate", Value: r.challenge},
			AppendAction: action,
		})
	}
	if r.retryAfter {
		headers = append(headers, &core.HeaderValueOption{
			Header:       &core.HeaderValue{Key: "retry-after", Value: retryAfterFromReset},
			AppendAction: core.HeaderValueOption_ADD_IF_ABSENT,
		})
	}
	detail := "%LOCAL_REPLY_BODY%"
	if r.detail != "" {
		detail = r.detail
	}
	body, err := problemFormat(problem.TypeFor(int(shown)), http.StatusText(int(shown)), status, detail)
	if err != nil {
		return nil, fmt.Errorf("local reply %d: %w", r.status, err)
	}
	filter := statusFilter(accesslog.ComparisonFilter_EQ, r.status)
	if r.tokenCheck {
		if filter, err = andTokenCheck(filter); err != nil {
			return nil, err
		}
	}
	return &hcm.ResponseMapper{
		Filter:             filter,
		StatusCode:         statusOverride(r.as),
		HeadersToAdd:       headers,
		BodyFormatOverride: body,
	}, nil
}

// problemFormat is a problem+json body as an Envoy format string; status
// is a number or a command such as %RESPONSE_CODE% (which the JSON
// formatter renders as a number).
func problemFormat(typ, title string, status any, detail string) (*core.SubstitutionFormatString, error) {
	body, err := structpb.NewStruct(map[string]any{
		"type":       typ,
		"title":      title,
		"status":     status,
		"detail":     detail,
		"instance":   "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
		"request_id": "%REQ(X-REQUEST-ID)%",
	})
	if err != nil {
		return nil, err
	}
	return &core.SubstitutionFormatString{
		Format:      &core.SubstitutionFormatString_JsonFormat{JsonFormat: body},
		ContentType: problem.ContentType,
	}, nil
}

// noStoreHeader marks an error as never stored, as the services mark
// theirs: their documents declare Cache-Control on every answer,
// including the 401 the ingress gives in their place.
func noStoreHeader() *core.HeaderValueOption {
	return &core.HeaderValueOption{
		Header:       &core.HeaderValue{Key: "cache-control", Value: "no-store"},
		AppendAction: core.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

func statusFilter(op accesslog.ComparisonFilter_Op, status uint32) *accesslog.AccessLogFilter {
	key := fmt.Sprintf("portico.local_reply.%d", status)
	if op != accesslog.ComparisonFilter_EQ {
		key = fmt.Sprintf("portico.local_reply.%s_%d", op, status)
	}
	return &accesslog.AccessLogFilter{FilterSpecifier: &accesslog.AccessLogFilter_StatusCodeFilter{
		StatusCodeFilter: &accesslog.StatusCodeFilter{Comparison: &accesslog.ComparisonFilter{
			Op:    op,
			Value: &core.RuntimeUInt32{DefaultValue: status, RuntimeKey: key},
		}},
	}}
}

// tokenCheckDetails begins the response code details of every refusal
// of jwt_authn.
const tokenCheckDetails = "jwt_authn_access_denied" //nolint:gosec // a response code detail, not a credential

// andTokenCheck narrows a filter to the token check's replies.
func andTokenCheck(f *accesslog.AccessLogFilter) (*accesslog.AccessLogFilter, error) {
	cel, err := anypb.New(&celfilter.ExpressionFilter{
		Expression: fmt.Sprintf("response.code_details.startsWith(%q)", tokenCheckDetails),
	})
	if err != nil {
		return nil, err
	}
	return &accesslog.AccessLogFilter{FilterSpecifier: &accesslog.AccessLogFilter_AndFilter{AndFilter: &accesslog.AndFilter{
		Filters: []*accesslog.AccessLogFilter{f, {FilterSpecifier: &accesslog.AccessLogFilter_ExtensionFilter{
			ExtensionFilter: &accesslog.ExtensionFilter{
				Name:       "envoy.access_loggers.extension_filters.cel",
				ConfigType: &accesslog.ExtensionFilter_TypedConfig{TypedConfig: cel},
			},
		}}},
	}}}, nil
}

func statusOverride(status uint32) *wrapperspb.UInt32Value {
	if status == 0 {
		return nil
	}
	return wrapperspb.UInt32(status)
}
