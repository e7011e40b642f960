// Package contract runs schemathesis through the ingress against the
// merged OpenAPI document it serves, on a system built by
// mesh/localenv/stack like `make up`'s: every documented operation is
// called with generated valid and invalid requests (examples, coverage,
// fuzzing and stateful phases), and every answer must be one the document
// declares. See README "Contract run (schemathesis)".
package contract
