package usersapi

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/getkin/kin-openapi/openapi3"
)

// openapiYAML is the service's contract. The contract test checks every
// response the API tests receive against it, and that it documents exactly
// the mounted routes.
//
//go:embed openapi.yaml
var openapiYAML []byte

// LoadDocument parses and validates the OpenAPI document. Each call returns
// a fresh copy, which the caller may modify (tests set its server URL).
func LoadDocument(ctx context.Context) (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	loader.Context = ctx
	doc, err := loader.LoadFromData(openapiYAML)
	if err != nil {
		return nil, fmt.Errorf("usersapi: load OpenAPI document: %w", err)
	}
	if err := doc.Validate(ctx); err != nil {
		return nil, fmt.Errorf("usersapi: invalid OpenAPI document: %w", err)
	}
	return doc, nil
}
