package httpcache

import "github.com/prometheus/client_golang/prometheus"

// metrics are the cache's Prometheus series.
type metrics struct {
	hits      *prometheus.CounterVec
	stale     *prometheus.CounterVec
	misses    *prometheus.CounterVec
	bypasses  *prometheus.CounterVec
	notStored *prometheus.CounterVec
	refreshes *prometheus.CounterVec
	origin    *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_cache_hits_total",
			Help: "Requests answered with a fresh stored response, by upstream.",
		}, []string{"upstream"}),
		stale: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_cache_stale_total",
			Help: "Requests answered with a stale response while it was refreshed (stale-while-revalidate), by upstream.",
		}, []string{"upstream"}),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_cache_misses_total",
			Help: "Cacheable requests that went to the origin, by upstream.",
		}, []string{"upstream"}),
		bypasses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_cache_bypasses_total",
			Help: "Requests sent to the origin without consulting the cache, by upstream and reason (method, request, redis).",
		}, []string{"upstream", "reason"}),
		notStored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_cache_not_stored_total",
			Help: "Origin responses to cacheable requests that were not stored, by upstream and reason.",
		}, []string{"upstream", "reason"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_cache_background_refreshes_total",
			Help: "Background refreshes of stale entries, by upstream and result (done, failed, dropped when too many run, already-fresh when another refresh stored it first).",
		}, []string{"upstream", "result"}),
		origin: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "edge_origin_duration_seconds",
			Help:    "Time for an origin to answer a request the edge forwarded, by upstream and status class (or error).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"upstream", "status"}),
	}
	reg.MustRegister(m.hits, m.stale, m.misses, m.bypasses, m.notStored, m.refreshes, m.origin)
	return m
}
