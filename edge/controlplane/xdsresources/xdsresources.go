// Package xdsresources is the table of Envoy resources that passes from
// the translator to the xDS server. It has its own package so that the
// two stages are siblings: the server serves whatever it is handed and
// knows nothing of how it was made.
package xdsresources

import "github.com/envoyproxy/go-control-plane/pkg/cache/types"

// Set is one ingress's configuration, by xDS type.
type Set struct {
	Listeners []types.Resource
	Routes    []types.Resource
	Clusters  []types.Resource
	Endpoints []types.Resource
	Secrets   []types.Resource
	// RateLimitConfigs configure the rate-limit service, a separate xDS
	// client with its own snapshot.
	RateLimitConfigs []types.Resource
}
