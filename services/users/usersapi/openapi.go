package usersapi

import (
	_ "embed" // the OpenAPI document ships inside the binary

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/portico-mesh/portico/services/platform/openapidoc"
)

// openAPIYAML is the service's contract. The API tests check every
// response they receive against it, and that it documents exactly the
// mounted routes.
//
//go:embed openapi.yaml
var openAPIYAML []byte

// OpenAPIDocument loads and validates the embedded document; each call
// returns a fresh copy.
func OpenAPIDocument() (*openapi3.T, error) { return openapidoc.Load(openAPIYAML) }

// OpenAPIJSON returns the validated document as JSON, the form served at
// /openapi.json.
func OpenAPIJSON() ([]byte, error) { return openapidoc.JSON(openAPIYAML) }
