package translate

import (
	"fmt"

	accesslog "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// problem is how a reply the ingress makes itself is described to clients:
// the same RFC 9457 types the services use.
type problem struct {
	status uint32
	kind   string
	title  string
}

// problems lists the statuses the ingress answers on its own, sorted.
var problems = []problem{
	{400, "malformed-request", "Bad Request"},
	{401, "unauthenticated", "Unauthorized"},
	{403, "forbidden", "Forbidden"},
	{404, "not-found", "Not Found"},
	{413, "payload-too-large", "Content Too Large"},
	{429, "rate-limited", "Too Many Requests"},
	{431, "malformed-request", "Request Header Fields Too Large"},
	{502, "unavailable", "Bad Gateway"},
	{503, "unavailable", "Service Unavailable"},
	{504, "unavailable", "Gateway Timeout"},
}

// localReplies rewrites every reply Envoy generates itself (a failed token
// check, a rate limit, no healthy instance, an unknown path) into
// application/problem+json. Responses from services are never touched.
func localReplies() (*hcm.LocalReplyConfig, error) {
	cfg := &hcm.LocalReplyConfig{}
	for _, p := range problems {
		body, err := structpb.NewStruct(map[string]any{
			"type":       "urn:portico:problem:" + p.kind,
			"title":      p.title,
			"status":     "%RESPONSE_CODE%",
			"detail":     "%LOCAL_REPLY_BODY%",
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
			BodyFormatOverride: &core.SubstitutionFormatString{
				Format:      &core.SubstitutionFormatString_JsonFormat{JsonFormat: body},
				ContentType: "application/problem+json",
			},
		}
		cfg.Mappers = append(cfg.Mappers, m)
	}
	return cfg, nil
}
