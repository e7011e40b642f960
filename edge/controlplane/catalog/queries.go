package catalog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/services/platform/backoff"
	"github.com/portico-mesh/portico/services/platform/consulwatch"
)

// The Consul queries a Watcher follows, each one consulwatch.Watch, and
// the one-shot datacenter lookup.

// Watch kinds, the label of the per-watch metrics.
const (
	kindAgent    = "agent"
	kindServices = "services"
	kindHealth   = "health"
	kindLeaf     = "leaf"
	kindRoots    = "roots"
	kindConfig   = "config"
)

// connectServicesFilter keeps the catalog's service list to services whose
// instances are ordinary ones: proxies and gateways are not destinations
// of the ingress. (Connect-native services are ordinary ones too.)
const connectServicesFilter = `ServiceKind == ""`

// excluded says whether a service is never a destination of the ingress:
// Consul's own servers register as "consul".
func excluded(name string) bool { return name == "consul" }

func (w *Watcher) leafWatch(st *state) *consulwatch.Watch[*api.LeafCert] {
	agent := w.cfg.Client.Agent()
	return newWatch(w, kindLeaf, w.log,
		func(q *api.QueryOptions) (*api.LeafCert, *api.QueryMeta, error) {
			return agent.ConnectCALeaf(w.cfg.IngressService, q)
		},
		func(c *api.LeafCert) {
			if c != nil {
				w.log.Info("ingress leaf certificate", "spiffe_id", c.ServiceURI, "serial", c.SerialNumber, "valid_before", c.ValidBefore)
			}
			st.setLeaf(leafFromCert(c))
		})
}

func (w *Watcher) rootsWatch(st *state) *consulwatch.Watch[*api.CARootList] {
	agent := w.cfg.Client.Agent()
	return newWatch(w, kindRoots, w.log, agent.ConnectCARoots,
		func(list *api.CARootList) {
			trustDomain, roots := identityFromRoots(list)
			st.setRoots(trustDomain, roots)
		})
}

func (w *Watcher) configWatch(st *state) *consulwatch.Watch[*api.KVPair] {
	kv := w.cfg.Client.KV()
	return newWatch(w, kindConfig, w.log,
		func(q *api.QueryOptions) (*api.KVPair, *api.QueryMeta, error) {
			return kv.Get(w.cfg.ConfigKey, q)
		},
		func(p *api.KVPair) { st.setConfig(configFromPair(p)) })
}

// servicesWatch follows the catalog's service list and keeps one health
// watch per service in it. The health watches run in wg under ctx, each
// with its own cancel for when its service leaves the catalog.
func (w *Watcher) servicesWatch(ctx context.Context, wg *sync.WaitGroup, st *state) *consulwatch.Watch[map[string][]string] {
	catalog := w.cfg.Client.Catalog()
	start := func(name string) *serviceWatch {
		sctx, cancel := context.WithCancel(ctx)
		sw := &serviceWatch{cancel: cancel}
		hw := w.healthWatch(name, sw, st)
		wg.Go(func() { w.run(sctx, kindHealth, hw.Run) })
		w.log.Debug("watching service", "service", name)
		return sw
	}
	return newWatch(w, kindServices, w.log,
		func(q *api.QueryOptions) (map[string][]string, *api.QueryMeta, error) {
			q.Filter = connectServicesFilter
			return catalog.Services(q)
		},
		func(list map[string][]string) {
			names := make(map[string]struct{}, len(list))
			for name := range list {
				if !excluded(name) {
					names[name] = struct{}{}
				}
			}
			w.metrics.watchedServices.Set(float64(st.syncServices(names, start)))
		})
}

// healthWatch follows every Connect instance of one service. It asks for
// all of them, not only the passing ones, and filters itself: a service
// whose sidecars are all failing is still a Connect service (with no
// endpoints), which a passing-only answer could not tell from a service
// without Connect.
func (w *Watcher) healthWatch(name string, sw *serviceWatch, st *state) *consulwatch.Watch[[]*api.ServiceEntry] {
	health := w.cfg.Client.Health()
	return newWatch(w, kindHealth, w.log.With("service", name),
		func(q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
			return health.Connect(name, "", false, q)
		},
		func(entries []*api.ServiceEntry) {
			svc, connect := serviceFromEntries(name, entries)
			st.setService(sw, svc, connect)
		})
}

// fetchDatacenter asks the agent for its datacenter once, retrying with
// backoff until it answers: it does not change during the agent's life.
func (w *Watcher) fetchDatacenter(ctx context.Context, st *state) {
	b := w.backoff()
	for failures := 1; ; failures++ {
		dc, err := w.datacenter(ctx)
		if err == nil {
			st.setDatacenter(dc)
			return
		}
		if ctx.Err() != nil {
			return
		}
		w.metrics.queryErrors.WithLabelValues(kindAgent).Inc()
		delay := b.Delay(failures)
		w.log.Warn("consul query failed", "watch", kindAgent, "failures", failures, "retry_in", delay, "err", err)
		if !backoff.Wait(ctx, delay) {
			return
		}
	}
}

func (w *Watcher) datacenter(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, agentSelfTimeout)
	defer cancel()
	// Agent().Self takes no context; the raw query does, so shutdown
	// interrupts it like every other query.
	var self struct{ Config struct{ Datacenter string } }
	q := (&api.QueryOptions{}).WithContext(ctx)
	if _, err := w.cfg.Client.Raw().Query("/v1/agent/self", &self, q); err != nil {
		return "", fmt.Errorf("read the agent's configuration: %w", err)
	}
	if self.Config.Datacenter == "" {
		return "", errors.New("the agent's configuration has no datacenter")
	}
	return self.Config.Datacenter, nil
}

// agentSelfTimeout bounds the datacenter lookup, which does not block.
const agentSelfTimeout = 10 * time.Second
