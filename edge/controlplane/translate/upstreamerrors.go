package translate

import (
	"fmt"

	xdscore "github.com/cncf/xds/go/xds/core/v3"
	xdsmatcher "github.com/cncf/xds/go/xds/type/matcher/v3"
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
// without a problem body into the ingress's own reply of that status. The
// services answer every error as problem+json themselves; what does not is
// a service's sidecar speaking for it: an intention's denial ("RBAC: access
// denied", 403), or no service behind the sidecar (503). The local reply
// mappers see only the ingress's own replies, so the filter replaces such
// a response by a local reply of the same status, which they then write
// as they write every other (localreply.go).
type upstreamErrors struct{}

// patchHCM puts the filter first in the chain, so it is the last to see a
// response: the other filters' headers are kept.
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

// upstreamUnauthenticatedDetail is the text of a sidecar's 401 replaced:
// the 401 mapping shows a reply's own text, which for the token check's
// says what is wrong with the token.
const upstreamUnauthenticatedDetail = "The request needs a valid bearer token."

// upstreamErrorMatcher matches an error status (4xx, 5xx) whose response
// is not problem+json.
func upstreamErrorMatcher() (*xdsmatcher.Matcher, error) {
	notProblem, err := notProblemPredicate()
	if err != nil {
		return nil, err
	}
	classInput, err := xdsTyped("status-class", &matcher.HttpResponseStatusCodeClassMatchInput{})
	if err != nil {
		return nil, err
	}
	statusInput, err := xdsTyped("status", &matcher.HttpResponseStatusCodeMatchInput{})
	if err != nil {
		return nil, err
	}
	replace, err := localReplyPolicy("")
	if err != nil {
		return nil, err
	}
	unauthenticated, err := localReplyPolicy(upstreamUnauthenticatedDetail)
	if err != nil {
		return nil, err
	}
	exact := func(s string) *xdsmatcher.StringMatcher {
		return &xdsmatcher.StringMatcher{MatchPattern: &xdsmatcher.StringMatcher_Exact{Exact: s}}
	}
	and := func(p ...*xdsmatcher.Matcher_MatcherList_Predicate) *xdsmatcher.Matcher_MatcherList_Predicate {
		return &xdsmatcher.Matcher_MatcherList_Predicate{MatchType: &xdsmatcher.Matcher_MatcherList_Predicate_AndMatcher{
			AndMatcher: &xdsmatcher.Matcher_MatcherList_Predicate_PredicateList{Predicate: p},
		}}
	}
	var matchers []*xdsmatcher.Matcher_MatcherList_FieldMatcher
	for _, m := range []struct {
		predicate *xdsmatcher.Matcher_MatcherList_Predicate
		policy    *xdscore.TypedExtensionConfig
	}{
		{and(singlePredicate(statusInput, exact("401")), notProblem), unauthenticated},
		{and(singlePredicate(classInput, exact("4xx")), notProblem), replace},
		{and(singlePredicate(classInput, exact("5xx")), notProblem), replace},
	} {
		matchers = append(matchers, &xdsmatcher.Matcher_MatcherList_FieldMatcher{
			Predicate: m.predicate,
			OnMatch:   &xdsmatcher.Matcher_OnMatch{OnMatch: &xdsmatcher.Matcher_OnMatch_Action{Action: m.policy}},
		})
	}
	return &xdsmatcher.Matcher{MatcherType: &xdsmatcher.Matcher_MatcherList_{
		MatcherList: &xdsmatcher.Matcher_MatcherList{Matchers: matchers},
	}}, nil
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

// localReplyPolicy replaces the response by a local reply of its own
// status whose text is body, so the local reply mappers write it.
func localReplyPolicy(body string) (*xdscore.TypedExtensionConfig, error) {
	policy := &localresponse.LocalResponsePolicy{}
	if body != "" {
		policy.Body = inline(body)
	}
	return xdsTyped("local-reply", policy)
}

func xdsTyped(name string, m proto.Message) (*xdscore.TypedExtensionConfig, error) {
	a, err := anypb.New(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &xdscore.TypedExtensionConfig{Name: name, TypedConfig: a}, nil
}
