// Package apidocs serves one OpenAPI document for the whole platform, as
// clients see it through the ingress, and Swagger UI over it.
//
// Services announce their own document in the Consul catalog (service
// meta "openapi" names its path); the edge fetches each through the mesh,
// merges them and refreshes the result when the catalog changes.
package apidocs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/portico-mesh/portico/services/platform/contract"
)

// Spec is one service's own OpenAPI document.
type Spec struct {
	// Service is the catalog name; the ingress publishes the service
	// under /api/<Service>.
	Service string
	// Path is where the service serves the document; that operation is
	// left out of the merged document, which replaces it.
	Path string
	// Document is the OpenAPI 3.0 JSON document.
	Document []byte
}

// BearerScheme is the security scheme of the merged document: clients
// send the users service's access token to the ingress.
const BearerScheme = "bearerAuth"

// componentKinds are the sections of components whose members $refs
// name. Security schemes are not among them: each service's scheme
// describes the identity headers behind the ingress, which clients never
// send, and is replaced by BearerScheme.
var componentKinds = []string{"schemas", "responses", "parameters", "examples", "requestBodies", "headers", "links", "callbacks"}

var methods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// ErrNoSpecs is returned when there is nothing to merge.
var ErrNoSpecs = errors.New("apidocs: no service documents")

var validService = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Merge builds the document clients use. Each service's paths move under
// /api/<service>, its components are renamed <service>.<name> with every
// $ref rewritten to match, operations the service marks public (an
// explicit empty security list) stay public and every other one requires
// the bearer token. The result is validated as OpenAPI 3.
func Merge(specs []Spec) ([]byte, error) {
	if len(specs) == 0 {
		return nil, ErrNoSpecs
	}
	specs = slices.Clone(specs)
	slices.SortFunc(specs, func(a, b Spec) int { return strings.Compare(a.Service, b.Service) })

	paths := map[string]any{}
	components := map[string]map[string]any{}
	tags := []any{}
	tagSeen := map[string]bool{}
	operationIDs := map[string]string{}
	var services []string

	for _, spec := range specs {
		if !validService.MatchString(spec.Service) {
			return nil, fmt.Errorf("apidocs: service name %q cannot be a path segment", spec.Service)
		}
		var doc map[string]any
		if err := json.Unmarshal(spec.Document, &doc); err != nil {
			return nil, fmt.Errorf("apidocs: %s: %w", spec.Service, err)
		}
		if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.0.") {
			return nil, fmt.Errorf("apidocs: %s: openapi %q, want 3.0.x", spec.Service, v)
		}
		services = append(services, spec.Service)
		prefix := spec.Service + "."
		rewriteRefs(doc, prefix)
		dropInternalHeaders(doc)

		if comps, ok := doc["components"].(map[string]any); ok {
			for _, kind := range componentKinds {
				members, ok := comps[kind].(map[string]any)
				if !ok {
					continue
				}
				if components[kind] == nil {
					components[kind] = map[string]any{}
				}
				for name, v := range members {
					components[kind][prefix+name] = v
				}
			}
		}
		for _, t := range asSlice(doc["tags"]) {
			tag, ok := t.(map[string]any)
			name, _ := tag["name"].(string)
			if ok && name != "" && !tagSeen[name] {
				tagSeen[name] = true
				tags = append(tags, tag)
			}
		}
		renamed := map[string]string{} // this service's operationIds made unique
		docPaths, _ := doc["paths"].(map[string]any)
		for _, p := range slices.Sorted(maps.Keys(docPaths)) {
			if p == spec.Path {
				continue
			}
			item, ok := docPaths[p].(map[string]any)
			if !ok {
				continue
			}
			for _, m := range methods {
				op, ok := item[m].(map[string]any)
				if !ok {
					continue
				}
				if from, to := publishOperation(op, spec.Service, operationIDs); from != to {
					renamed[from] = to
				}
				addIngressResponses(op, components["responses"])
			}
			public := "/api/" + spec.Service + p
			if _, dup := paths[public]; dup {
				return nil, fmt.Errorf("apidocs: path %s is documented twice", public)
			}
			paths[public] = item
		}
		// The document's links (in its paths and components, both now
		// part of the merged document) follow its renamed operations.
		renameLinkTargets(doc, renamed)
	}

	for kind, members := range ingressComponents() {
		if components[kind] == nil {
			components[kind] = map[string]any{}
		}
		maps.Copy(components[kind], members)
	}
	if components["securitySchemes"] == nil {
		components["securitySchemes"] = map[string]any{}
	}
	components["securitySchemes"][BearerScheme] = map[string]any{
		"type":         "http",
		"scheme":       "bearer",
		"bearerFormat": "JWT",
		"description":  "The access token from POST /api/users/login, as `Authorization: Bearer <token>`.",
	}
	merged := map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":   "Portico API",
			"version": "1",
			"description": "Every Portico service as clients call it through the ingress: " +
				strings.Join(services, ", ") + ". Operations need a bearer token from " +
				"POST /api/users/login unless marked otherwise. Errors are RFC 9457 problem details.",
		},
		"servers":    []any{map[string]any{"url": "/"}},
		"security":   []any{map[string]any{BearerScheme: []any{}}},
		"tags":       tags,
		"paths":      paths,
		"components": components,
	}
	out, err := json.Marshal(merged)
	if err != nil {
		return nil, fmt.Errorf("apidocs: encode: %w", err)
	}
	if err := Validate(out); err != nil {
		return nil, err
	}
	return out, nil
}

// publishOperation sets an operation's security for the ingress: an
// operation its service marks public (security: []) stays public; any
// other needs the bearer token, which the global requirement says. Its
// operationId is made unique across services; it returns the id before
// and after.
func publishOperation(op map[string]any, service string, ids map[string]string) (from, to string) {
	sec, has := op["security"]
	if list, ok := sec.([]any); has && ok && len(list) == 0 {
		op["security"] = []any{}
	} else {
		delete(op, "security")
	}
	id, ok := op["operationId"].(string)
	if !ok || id == "" {
		return "", ""
	}
	from = id
	if owner, taken := ids[id]; taken && owner != service {
		id = service + "." + id
		op["operationId"] = id
	}
	ids[id] = service
	return from, id
}

// renameLinkTargets rewrites the operationId of every OpenAPI link in v
// that names an operation renamed (old id -> new id).
func renameLinkTargets(v any, renamed map[string]string) {
	if len(renamed) == 0 {
		return
	}
	switch x := v.(type) {
	case map[string]any:
		for k, child := range x {
			if links, ok := child.(map[string]any); ok && k == "links" {
				for _, l := range links {
					if link, ok := l.(map[string]any); ok {
						if id, ok := link["operationId"].(string); ok && renamed[id] != "" {
							link["operationId"] = renamed[id]
						}
					}
				}
			}
			renameLinkTargets(child, renamed)
		}
	case []any:
		for _, child := range x {
			renameLinkTargets(child, renamed)
		}
	}
}

// internalHeaders are response headers for the edge alone: it removes
// them before responses reach clients, so clients must not be told of
// them.
var internalHeaders = []string{contract.HeaderSurrogateKey}

// dropInternalHeaders removes internalHeaders from every response's
// headers in v.
func dropInternalHeaders(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, child := range x {
			if headers, ok := child.(map[string]any); ok && k == "headers" {
				for name := range headers {
					if slices.ContainsFunc(internalHeaders, func(h string) bool { return strings.EqualFold(h, name) }) {
						delete(headers, name)
					}
				}
			}
			dropInternalHeaders(child)
		}
	case []any:
		for _, child := range x {
			dropInternalHeaders(child)
		}
	}
}

// The ingress's own answers, which the services' documents cannot know.
// Every one is an RFC 9457 problem (application/problem+json) that the
// ingress writes itself, without reaching a service. Their components are
// prefixed "portico.", which no service name can be.
const (
	ingressProblem    = "portico.Problem"
	ingressRetryAfter = "portico.RetryAfter"
)

// ingressResponse is one status the ingress itself may answer.
type ingressResponse struct {
	status int
	// component names it in components.responses.
	component   string
	description string
	// protectedOnly: only operations that need a token can get it.
	protectedOnly bool
	// retryAfter: the answer carries Retry-After.
	retryAfter bool
}

// ingressResponses lists them in the order they are documented.
var ingressResponses = []ingressResponse{
	{status: 400, component: "portico.BadRequest",
		description: "The request is not well-formed HTTP (request line, header names or values), refused by the ingress's codec."},
	{status: 401, component: "portico.Unauthenticated", protectedOnly: true,
		description: "No valid bearer token (missing, malformed, expired, or not signed by the users service), answered by the ingress."},
	{status: 403, component: "portico.Forbidden",
		description: "An intention of the mesh denies the ingress this service (the operator's decision, answered by the service's sidecar)."},
	{status: 404, component: "portico.NoRoute",
		description: "No route of the ingress matches the request (the ingress's own answer; a service's 404 is documented by the service)."},
	{status: 405, component: "portico.MethodNotAllowed",
		description: "The method is not one the path's route takes; Allow lists those it does."},
	{status: 413, component: "portico.PayloadTooLarge",
		description: "The request body is larger than the ingress accepts."},
	{status: 429, component: "portico.RateLimited", retryAfter: true,
		description: "Over a rate limit of the ingress; retry after the Retry-After delay."},
	{status: 431, component: "portico.HeadersTooLarge",
		description: "The request line and headers together are larger than the ingress accepts."},
	{status: 500, component: "portico.Internal",
		description: "The service failed without a problem body of its own; the ingress answers in its place, naming no instance."},
	{status: 502, component: "portico.BadGateway",
		description: "The service's answer could not be read (reset or malformed), answered by the ingress."},
	{status: 503, component: "portico.Unavailable",
		description: "No healthy instance of the service can take the request now."},
	{status: 504, component: "portico.Timeout",
		description: "The service did not answer within the route's timeout, answered by the ingress."},
}

func ingressComponents() map[string]map[string]any {
	problemBody := map[string]any{
		"application/problem+json": map[string]any{
			"schema": map[string]any{"$ref": "#/components/schemas/" + ingressProblem},
		},
	}
	responses := map[string]any{}
	for _, r := range ingressResponses {
		resp := map[string]any{"description": r.description, "content": problemBody}
		if r.retryAfter {
			resp["headers"] = map[string]any{"Retry-After": map[string]any{"$ref": "#/components/headers/" + ingressRetryAfter}}
		}
		responses[r.component] = resp
	}
	return map[string]map[string]any{
		"schemas": {
			ingressProblem: map[string]any{
				"type":        "object",
				"description": "An RFC 9457 problem given by the ingress.",
				"required":    []any{"type", "title", "status"},
				"properties": map[string]any{
					"type":       map[string]any{"type": "string"},
					"title":      map[string]any{"type": "string"},
					"status":     map[string]any{"type": "integer"},
					"detail":     map[string]any{"type": "string", "nullable": true},
					"instance":   map[string]any{"type": "string", "nullable": true},
					"request_id": map[string]any{"type": "string", "nullable": true},
				},
			},
		},
		"headers": {
			ingressRetryAfter: map[string]any{
				"description": "Seconds to wait before retrying.",
				"required":    true,
				"schema":      map[string]any{"type": "integer", "minimum": 0},
			},
		},
		"responses": responses,
	}
}

// addIngressResponses documents the ingress's own answers on op
// (ingressResponses; 401 only where a token is required). Where the
// service documents the same status, the ingress may still answer it
// itself: that response is kept, its problem body widened to either
// problem (the service's or the ingress's). responses are the merged
// components.responses, which resolve the service's references.
func addIngressResponses(op map[string]any, responses map[string]any) {
	opResponses, ok := op["responses"].(map[string]any)
	if !ok {
		return
	}
	// publishOperation leaves security only on public operations.
	_, public := op["security"]
	for _, r := range ingressResponses {
		if r.protectedOnly && public {
			continue
		}
		code := strconv.Itoa(r.status)
		own, has := opResponses[code]
		if !has {
			opResponses[code] = map[string]any{"$ref": "#/components/responses/" + r.component}
			continue
		}
		if widened := widenProblem(own, responses, r); widened != nil {
			opResponses[code] = widened
		}
	}
}

// widenProblem returns a copy of the service's response resp (resolved if
// a reference) whose problem body may also be the ingress's problem, or
// nil when resp cannot be read.
func widenProblem(resp any, responses map[string]any, r ingressResponse) map[string]any {
	if m, ok := resp.(map[string]any); ok {
		if ref, ok := m["$ref"].(string); ok {
			name, found := strings.CutPrefix(ref, "#/components/responses/")
			if !found {
				return nil
			}
			resp = responses[name]
		}
	}
	raw, err := json.Marshal(resp)
	if err != nil {
		return nil
	}
	var out map[string]any
	if json.Unmarshal(raw, &out) != nil || out == nil {
		return nil
	}
	ingress := map[string]any{"$ref": "#/components/schemas/" + ingressProblem}
	content, _ := out["content"].(map[string]any)
	if content == nil {
		content = map[string]any{}
		out["content"] = content
	}
	media, _ := content["application/problem+json"].(map[string]any)
	if media == nil {
		content["application/problem+json"] = map[string]any{"schema": ingress}
	} else if own, ok := media["schema"]; ok {
		media["schema"] = map[string]any{"anyOf": []any{own, ingress}}
	} else {
		media["schema"] = ingress
	}
	desc, _ := out["description"].(string)
	out["description"] = strings.TrimSpace(desc + " Or the ingress's own answer: " + r.description)
	return out
}

// rewriteRefs renames every local component reference in v.
func rewriteRefs(v any, prefix string) {
	switch x := v.(type) {
	case map[string]any:
		for k, child := range x {
			if ref, ok := child.(string); ok && k == "$ref" {
				x[k] = renameRef(ref, prefix)
				continue
			}
			rewriteRefs(child, prefix)
		}
	case []any:
		for _, child := range x {
			rewriteRefs(child, prefix)
		}
	}
}

// renameRef turns #/components/<kind>/<name> into
// #/components/<kind>/<prefix><name>. References elsewhere are left as
// they are; validation rejects any that dangle.
func renameRef(ref, prefix string) string {
	rest, ok := strings.CutPrefix(ref, "#/components/")
	if !ok {
		return ref
	}
	kind, name, ok := strings.Cut(rest, "/")
	if !ok || !slices.Contains(componentKinds, kind) {
		return ref
	}
	return "#/components/" + kind + "/" + prefix + name
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// Validate loads doc with kin-openapi, resolving every reference, and
// validates it as OpenAPI 3.
func Validate(doc []byte) error {
	loader := openapi3.NewLoader()
	loader.IsExternalRefsAllowed = false
	t, err := loader.LoadFromData(doc)
	if err != nil {
		return fmt.Errorf("apidocs: merged document does not load: %w", err)
	}
	if err := t.Validate(context.Background()); err != nil {
		return fmt.Errorf("apidocs: merged document is invalid: %w", err)
	}
	return nil
}
