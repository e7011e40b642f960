// Package envoy renders the bootstrap files of the Envoy processes Portico
// runs itself (the ingress); sidecars get theirs from `consul connect envoy`.
package envoy

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"text/template"
)

//go:embed ingress.yaml.tmpl
var ingressTemplate string

// IngressBootstrap are the parameters of the ingress bootstrap.
type IngressBootstrap struct {
	// NodeID names this Envoy to the control plane; unique per instance.
	NodeID    string
	AdminPort int
	// XDSHost and XDSPort locate the control plane's ADS server.
	XDSHost string
	XDSPort int
	// MetricsHost and MetricsPort expose /stats/prometheus alone; a zero
	// port leaves it out.
	MetricsHost string
	MetricsPort int
	// OutlierLog, when set, is the file Envoy appends outlier ejection
	// events to.
	OutlierLog string
}

// Ingress renders the ingress bootstrap YAML.
func Ingress(p IngressBootstrap) ([]byte, error) {
	if p.NodeID == "" || p.AdminPort == 0 || p.XDSHost == "" || p.XDSPort == 0 {
		return nil, errors.New("ingress bootstrap: node id, admin port and xDS address are required")
	}
	if p.MetricsPort != 0 && p.MetricsHost == "" {
		p.MetricsHost = "127.0.0.1"
	}
	tmpl, err := template.New("ingress").Option("missingkey=error").Parse(ingressTemplate)
	if err != nil {
		return nil, fmt.Errorf("ingress bootstrap: %w", err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, p); err != nil {
		return nil, fmt.Errorf("ingress bootstrap: %w", err)
	}
	return out.Bytes(), nil
}
