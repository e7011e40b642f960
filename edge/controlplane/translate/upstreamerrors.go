package translate

import (
	"fmt"
	"net/http"

	xdscore "github.com/cncf/xds/go/xds/core/v3"
	xdsmatcher "github.com/cncf/xds/go/xds/type/matcher/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	customresponse "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/custom_response/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	localresponse "github.com/envoyproxy/go-control-plane/envoy/extensions/http/custom_response/local_response_policy/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/edge/controlplane/xdsresources"
	"github.com/portico-mesh/portico/services/platform/problem"
)

const customResponseFilterName = "envoy.filters.http.custom_response"

// upstreamErrors turns an error that reaches the ingress from upstream
// without a problem body into one. The services answer every error as
// problem+json themselves; what does not is a service's sidecar speaking
// for it: an intention's denial ("RBAC: access denied", 403), or no
// service behind the sidecar (503). The local reply mappers never see
// those, as they are responses, not the ingress's own replies. The type
// is the status's (problem.TypeFor) and the original status is kept.
type upstreamErrors struct{}

// patchHCM puts the filter first in the chain, so it is the last to see a
// response: the other filters' headers are kept, and its own replies and
// the ingress's local replies (already problem+json) pass untouched.
func (upstreamErrors) patchHCM(_ *ir.Xds, mgr *hcm.HttpConnectionManager) error {
	m, err := upstreamErrorMatcher()
	if err != nil {
		return err
	}
	f, err := httpFilter(customResponseFilterName, &customresponse.CustomResponse{CustomResponseMatcher: m})
	if err != nil {
		return err
	}
	mgr.HttpFilters = append([]*hcm.HttpFilter{f}, mgr.HttpFilters...)
	return nil
}

func (upstreamErrors) patchRoute(*ir.Xds, ir.Route, *route.Route) error { return nil }

func (upstreamErrors) patchResources(*ir.Xds, *xdsresources.Set) error { return nil }

// upstreamDetails replaces the details of the local replies where the
// ingress's own text is the token check's (401) or an upstream's error
// means something else (403: a denial, not a token refused).
var upstreamDetails = map[uint32]string{
	401: "The request needs a valid bearer token.",
	403: "Access to this service is not allowed.",
}

// upstreamErrorMatcher picks, for a response that is not problem+json, a
// policy by its status where the ingress knows that status
// (ingressReplies), else by its status class; a success matches neither.
func upstreamErrorMatcher() (*xdsmatcher.Matcher, error) {
	notProblem, err := notProblemPredicate()
	if err != nil {
		return nil, err
	}
	byStatus := map[string]*xdsmatcher.Matcher_OnMatch{}
	// A status the ingress turns into another for its own replies (a
	// token refused for its audience) keeps its own meaning here.
	for _, r := range ingressReplies {
		detail := r.detail
		if d, ok := upstreamDetails[r.status]; ok {
			detail = d
		}
		policy, err := upstreamProblemPolicy(problem.TypeFor(int(r.status)), http.StatusText(int(r.status)), detail)
		if err != nil {
			return nil, fmt.Errorf("upstream error %d: %w", r.status, err)
		}
		byStatus[fmt.Sprint(r.status)] = policy
	}
	byClass := map[string]*xdsmatcher.Matcher_OnMatch{}
	for _, c := range []struct{ class, typ, title, detail string }{
		{"4xx", problem.TypeMalformed, "Client Error", clientErrorDetail},
		{"5xx", problem.TypeInternal, "Server Error", serverErrorDetail},
	} {
		policy, err := upstreamProblemPolicy(c.typ, c.title, c.detail)
		if err != nil {
			return nil, fmt.Errorf("upstream error %s: %w", c.class, err)
		}
		byClass[c.class] = policy
	}
	statusInput, err := xdsTyped("status", &matcher.HttpResponseStatusCodeMatchInput{})
	if err != nil {
		return nil, err
	}
	classInput, err := xdsTyped("status-class", &matcher.HttpResponseStatusCodeClassMatchInput{})
	if err != nil {
		return nil, err
	}
	byClassMatcher := exactMatchTree(classInput, byClass, nil)
	byStatusMatcher := exactMatchTree(statusInput, byStatus,
		&xdsmatcher.Matcher_OnMatch{OnMatch: &xdsmatcher.Matcher_OnMatch_Matcher{Matcher: byClassMatcher}})
	return &xdsmatcher.Matcher{MatcherType: &xdsmatcher.Matcher_MatcherList_{
		MatcherList: &xdsmatcher.Matcher_MatcherList{Matchers: []*xdsmatcher.Matcher_MatcherList_FieldMatcher{{
			Predicate: notProblem,
			OnMatch:   &xdsmatcher.Matcher_OnMatch{OnMatch: &xdsmatcher.Matcher_OnMatch_Matcher{Matcher: byStatusMatcher}},
		}}},
	}}, nil
}

// exactMatchTree looks the input's value up in m, else goes on to
// onNoMatch (nil: no match).
func exactMatchTree(input *xdscore.TypedExtensionConfig, m map[string]*xdsmatcher.Matcher_OnMatch, onNoMatch *xdsmatcher.Matcher_OnMatch) *xdsmatcher.Matcher {
	return &xdsmatcher.Matcher{
		MatcherType: &xdsmatcher.Matcher_MatcherTree_{MatcherTree: &xdsmatcher.Matcher_MatcherTree{
			Input: input,
			TreeType: &xdsmatcher.Matcher_MatcherTree_ExactMatchMap{ExactMatchMap: &xdsmatcher.Matcher_MatcherTree_MatchMap{
				Map: m,
			}},
		}},
		OnNoMatch: onNoMatch,
	}
}

// notProblemPredicate holds for a response whose Content-Type is not
// problem+json (or that has none).
func notProblemPredicate() (*xdsmatcher.Matcher_MatcherList_Predicate, error) {
	in, err := xdsTyped("content-type", &matcher.HttpResponseHeaderMatchInput{HeaderName: "content-type"})
	if err != nil {
		return nil, err
	}
	return &xdsmatcher.Matcher_MatcherList_Predicate{MatchType: &xdsmatcher.Matcher_MatcherList_Predicate_NotMatcher{
		NotMatcher: singlePredicate(in, &xdsmatcher.StringMatcher{
			MatchPattern: &xdsmatcher.StringMatcher_Prefix{Prefix: problem.ContentType},
			IgnoreCase:   true,
		}),
	}}, nil
}

func singlePredicate(input *xdscore.TypedExtensionConfig, value *xdsmatcher.StringMatcher) *xdsmatcher.Matcher_MatcherList_Predicate {
	return &xdsmatcher.Matcher_MatcherList_Predicate{MatchType: &xdsmatcher.Matcher_MatcherList_Predicate_SinglePredicate_{
		SinglePredicate: &xdsmatcher.Matcher_MatcherList_Predicate_SinglePredicate{
			Input:   input,
			Matcher: &xdsmatcher.Matcher_MatcherList_Predicate_SinglePredicate_ValueMatch{ValueMatch: value},
		},
	}}
}

// upstreamProblemPolicy replaces the body by a problem of the response's
// own status.
func upstreamProblemPolicy(typ, title, detail string) (*xdsmatcher.Matcher_OnMatch, error) {
	body, err := problemFormat(typ, title, "%RESPONSE_CODE%", detail)
	if err != nil {
		return nil, err
	}
	action, err := xdsTyped("problem", &localresponse.LocalResponsePolicy{
		BodyFormat:           body,
		ResponseHeadersToAdd: []*core.HeaderValueOption{noStoreHeader()},
	})
	if err != nil {
		return nil, err
	}
	return &xdsmatcher.Matcher_OnMatch{OnMatch: &xdsmatcher.Matcher_OnMatch_Action{Action: action}}, nil
}

func xdsTyped(name string, m proto.Message) (*xdscore.TypedExtensionConfig, error) {
	a, err := anypb.New(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &xdscore.TypedExtensionConfig{Name: name, TypedConfig: a}, nil
}
