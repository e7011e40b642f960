package usersapi

import (
	_ "embed" // the OpenAPI document ships inside the binary
	"encoding/json"
	"fmt"

	"github.com/getkin/kin-openapi/openapi3"
)

// openAPIYAML is the service's contract. The API tests check every
// response they receive against it, and that it documents exactly the
// mounted routes.
//
//go:embed openapi.yaml
var openAPIYAML []byte

// OpenAPIDocument loads and validates the embedded OpenAPI document. Each
// call returns a fresh copy, which the caller may modify (tests set its
// server URL).
func OpenAPIDocument() (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPIYAML)
	if err != nil {
		return nil, fmt.Errorf("openapi: load: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("openapi: invalid document: %w", err)
	}
	return doc, nil
}

// OpenAPIJSON returns the validated document as JSON, the form served at
// /openapi.json; it is built once at start.
func OpenAPIJSON() ([]byte, error) {
	doc, err := OpenAPIDocument()
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi: encode: %w", err)
	}
	return out, nil
}
