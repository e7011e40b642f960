// Package mesh holds end-to-end tests of Portico's Consul Connect mesh
// against real processes: a Consul dev agent with mesh/entries applied,
// the users service and two products instances built from this repository,
// Envoy sidecars started with `consul connect envoy`, and test clients with
// sidecars of their own (named ingress and edge, so the real intentions
// apply to them). PostgreSQL and RabbitMQ come from package localenvtest.
//
// The package has no non-test code.
package mesh
