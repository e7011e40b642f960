package stack

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"

	"github.com/portico-mesh/portico/mesh/localenv"
)

// The scrape targets of the stack's processes carry the job, instance and
// service labels of observability/prometheus/prometheus.yml (the `make up`
// configuration), so that a test's Prometheus feeds the same recording
// rules and dashboards.

// ScrapeTargets are the instance's own /metrics (job service) and, once
// its sidecar started, the sidecar's Envoy admin /stats/prometheus (job
// sidecar, instance <ID>-sidecar).
func (i *Instance) ScrapeTargets(service string) []localenv.ScrapeTarget {
	labels := map[string]string{"service": service}
	out := []localenv.ScrapeTarget{{Job: service, Instance: i.ID(), Labels: labels, Addr: localenv.Loopback(i.cfg.Port)}}
	if sc := i.Sidecar(); sc != nil {
		out = append(out, localenv.ScrapeTarget{
			Job: "sidecar", Instance: i.ID() + "-sidecar", Labels: labels, Addr: sc.AdminAddr(), Path: "/stats/prometheus",
		})
	}
	return out
}

// ScrapeTarget is the control plane's admin /metrics, in process or not.
func (cp *ControlPlane) ScrapeTarget() localenv.ScrapeTarget {
	addr := localenv.Loopback(cp.cfg.AdminPort)
	if cp.InProcess != nil {
		addr = cp.InProcess.AdminAddr()
	}
	return localenv.ScrapeTarget{
		Job: "controlplane", Instance: "controlplane", Labels: map[string]string{"service": "controlplane"}, Addr: addr,
	}
}

// IngressScrapeTarget is an ingress Envoy's admin /stats/prometheus.
func IngressScrapeTarget(e *localenv.Envoy) (localenv.ScrapeTarget, error) {
	u, err := url.Parse(e.AdminURL())
	if err != nil {
		return localenv.ScrapeTarget{}, fmt.Errorf("ingress admin URL: %w", err)
	}
	return localenv.ScrapeTarget{
		Job: "ingress", Instance: "ingress", Labels: map[string]string{"service": "ingress"}, Addr: u.Host, Path: "/stats/prometheus",
	}, nil
}

// RateLimitScrapeTarget is envoyproxy/ratelimit's own /metrics.
func RateLimitScrapeTarget(rl *localenv.RateLimit) localenv.ScrapeTarget {
	return localenv.ScrapeTarget{
		Job: "ratelimit", Instance: "ratelimit", Labels: map[string]string{"service": "ratelimit"}, Addr: rl.MetricsAddr(),
	}
}

// StartPrometheus runs Prometheus with the repository's recording and
// alerting rules (observability/prometheus/rules) unless opts.RuleFiles
// is set; an empty opts.Dir is Path("prometheus").
func (s *Stack) StartPrometheus(ctx context.Context, opts localenv.PrometheusOptions) (*localenv.Prometheus, error) {
	if opts.Dir == "" {
		opts.Dir = s.Path("prometheus")
	}
	if opts.RuleFiles == nil {
		opts.RuleFiles = []string{filepath.Join(s.cfg.Root, "observability", "prometheus", "rules", "*.yml")}
	}
	p, err := localenv.StartPrometheus(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	s.Started(p.Pid())
	s.OnStop("prometheus", p.Stop)
	return p, nil
}
