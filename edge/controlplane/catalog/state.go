package catalog

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"sync"
)

// state is the latest answer of every watch, already converted. The watches
// write it from their goroutines; the publisher reads it. Every write
// raises changed, which the publisher drains.
type state struct {
	changed chan struct{} // capacity 1: a pending change is enough

	mu          sync.Mutex
	datacenter  *string
	leaf        *Leaf
	trustDomain string
	rootsPEM    []string // nil until the roots were fetched
	config      *ConfigDoc
	listFetched bool
	services    map[string]*serviceWatch
}

// serviceWatch is one service's entry while it is in the catalog.
type serviceWatch struct {
	cancel context.CancelFunc // stops the service's health watch
	// fetched is false until the first answer; service is meaningful only
	// after it, and connect says whether the service has Connect instances.
	fetched bool
	connect bool
	service Service
}

func newState() *state {
	return &state{changed: make(chan struct{}, 1), services: map[string]*serviceWatch{}}
}

func (s *state) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// update runs f under the lock and notifies the publisher.
func (s *state) update(f func()) {
	s.mu.Lock()
	f()
	s.mu.Unlock()
	s.notify()
}

func (s *state) setDatacenter(dc string) { s.update(func() { s.datacenter = &dc }) }
func (s *state) setLeaf(l Leaf)          { s.update(func() { s.leaf = &l }) }
func (s *state) setConfig(c ConfigDoc)   { s.update(func() { s.config = &c }) }

func (s *state) setRoots(trustDomain string, rootsPEM []string) {
	s.update(func() { s.trustDomain, s.rootsPEM = trustDomain, rootsPEM })
}

// setService records a health answer, unless the watch that produced it
// was replaced or removed meanwhile (its answer may race with the stop).
func (s *state) setService(w *serviceWatch, svc Service, connect bool) {
	s.update(func() {
		if s.services[svc.Name] != w {
			return
		}
		w.fetched, w.connect, w.service = true, connect, svc
	})
}

// syncServices makes the set of watched services the given one: start is
// called for each new name and returns the new watch; removed services are
// stopped and forgotten. It returns how many services are watched.
func (s *state) syncServices(names map[string]struct{}, start func(name string) *serviceWatch) int {
	var n int
	s.update(func() {
		s.listFetched = true
		for name, w := range s.services {
			if _, ok := names[name]; !ok {
				w.cancel()
				delete(s.services, name)
			}
		}
		for name := range names {
			if _, ok := s.services[name]; !ok {
				s.services[name] = start(name)
			}
		}
		n = len(s.services)
	})
	return n
}

// snapshot builds a Snapshot of the current state. It is not ready until
// the datacenter, leaf, roots, configuration document and service list
// have each been fetched once. For the first snapshot (first is true) the
// health of every service listed so far must have been fetched too: a
// first snapshot without them would make the ingress answer 503 for
// services that are up. Later, a service that just appeared is left out
// until its first answer, so one slow or failing service watch cannot hold
// back every other change.
func (s *state) snapshot(first bool) (snap Snapshot, ready bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.datacenter == nil || s.leaf == nil || s.rootsPEM == nil || s.config == nil || !s.listFetched {
		return Snapshot{}, false
	}
	services := make([]Service, 0, len(s.services))
	for _, w := range s.services {
		if !w.fetched && first {
			return Snapshot{}, false
		}
		if w.fetched && w.connect {
			services = append(services, copyService(w.service))
		}
	}
	slices.SortFunc(services, func(a, b Service) int { return cmp.Compare(a.Name, b.Name) })
	cfg := *s.config
	cfg.Value = slices.Clone(cfg.Value)
	return Snapshot{
		Datacenter:  *s.datacenter,
		TrustDomain: s.trustDomain,
		Services:    services,
		Leaf:        *s.leaf,
		RootsPEM:    slices.Clone(s.rootsPEM),
		Config:      cfg,
	}, true
}

// copyService copies what a receiver could modify, so a published snapshot
// shares nothing with the state.
func copyService(s Service) Service {
	s.Meta = maps.Clone(s.Meta)
	s.Endpoints = slices.Clone(s.Endpoints)
	return s
}
