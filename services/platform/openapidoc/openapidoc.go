// Package openapidoc loads the OpenAPI document a service embeds: parsed,
// validated, and as the JSON served at /openapi.json. Every service loads
// its contract the same way, so a document that does not validate stops
// the service at start-up and fails its tests alike.
package openapidoc

import (
	"encoding/json"
	"fmt"

	"github.com/getkin/kin-openapi/openapi3"
)

// Load parses and validates the document in data (YAML or JSON). Each call
// returns a fresh copy, which the caller may modify (tests set its server
// URL).
func Load(data []byte) (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("openapi: load: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("openapi: invalid document: %w", err)
	}
	return doc, nil
}

// JSON returns the validated document as JSON; services build it once at
// start.
func JSON(data []byte) ([]byte, error) {
	doc, err := Load(data)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi: encode: %w", err)
	}
	return out, nil
}
