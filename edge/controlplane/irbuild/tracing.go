package irbuild

import (
	"fmt"
	"net"
	"strconv"

	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/edge/controlplane/ir"
)

// buildTracing is the ingress's tracer: on when a collector is known (the
// document's, else the control plane's), with the document's sampling,
// and its spans named for the ingress service.
func buildTracing(t edgeconfig.Tracing, controlPlaneCollector, ingress string) (*ir.Tracing, error) {
	collector := t.Collector
	if collector == "" {
		collector = controlPlaneCollector
	}
	if collector == "" {
		return nil, nil
	}
	host, portText, err := net.SplitHostPort(collector)
	if err != nil {
		return nil, fmt.Errorf("tracing collector %q: %w", collector, err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("tracing collector %q: invalid port", collector)
	}
	return &ir.Tracing{
		Address:         host,
		Port:            uint32(port),
		ServiceName:     ingress,
		SamplingPercent: t.SamplingPercent,
	}, nil
}
