package translate

import (
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/portico-mesh/portico/edge/controlplane/ir"
)

// loadAssignment lists a cluster's healthy sidecars (EDS), so instances
// come and go without the cluster itself changing.
func loadAssignment(c ir.Cluster) *endpoint.ClusterLoadAssignment {
	lbs := make([]*endpoint.LbEndpoint, 0, len(c.Endpoints))
	for _, e := range c.Endpoints {
		lbs = append(lbs, &endpoint.LbEndpoint{
			HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
				Address: socketAddress(e.Address, e.Port),
			}},
		})
	}
	return &endpoint.ClusterLoadAssignment{
		ClusterName: c.Name,
		Endpoints:   []*endpoint.LocalityLbEndpoints{{LbEndpoints: lbs}},
	}
}

func socketAddress(host string, port uint32) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Address:       host,
		PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
	}}}
}
