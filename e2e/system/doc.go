// Package system runs the whole of Portico on private loopback ports and
// checks it from the outside, through the Envoy ingress, as a client
// would: PostgreSQL, RabbitMQ, Redis, a Consul dev agent with the mesh
// configuration of mesh/entries, the users service, two products
// instances and the edge (built from this checkout) with their sidecars,
// the control plane, envoyproxy/ratelimit and one ingress Envoy, every one
// of them tracing into Jaeger as under `make up`.
//
// The tests prove what issue 5 asks of the edge against the real system,
// and what issue 11 asks of tracing (tracing_test.go: one request, one
// trace, from the ingress's access log to its spans in Jaeger);
// BenchmarkCacheThroughIngress measures hit and miss latency through the
// ingress (make bench-cache), BenchmarkTracingSampling what sampling costs.
package system
