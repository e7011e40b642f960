package catalog

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the watcher's Prometheus collectors, registered on the
// Registerer given in Config rather than a global one.
type metrics struct {
	queryErrors     *prometheus.CounterVec
	updates         *prometheus.CounterVec
	indexResets     *prometheus.CounterVec
	publishes       prometheus.Counter
	watchedServices prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		queryErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portico_catalog_query_errors_total",
			Help: "Consul queries of the catalog watcher that failed, by watch kind.",
		}, []string{"watch"}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portico_catalog_query_updates_total",
			Help: "Consul query answers with a new index, by watch kind; most do not change the snapshot.",
		}, []string{"watch"}),
		indexResets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portico_catalog_index_resets_total",
			Help: "Blocking queries whose index went backwards or was 0, by watch kind.",
		}, []string{"watch"}),
		publishes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portico_catalog_snapshot_publishes_total",
			Help: "Snapshots published because their content changed.",
		}),
		watchedServices: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portico_catalog_watched_services",
			Help: "Services of the catalog whose Connect endpoints are being watched.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.queryErrors, m.updates, m.indexResets, m.publishes, m.watchedServices} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register catalog metrics: %w", err)
		}
	}
	return m, nil
}
