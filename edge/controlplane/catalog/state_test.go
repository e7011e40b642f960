package catalog

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
)

func names(ns ...string) map[string]struct{} {
	m := map[string]struct{}{}
	for _, n := range ns {
		m[n] = struct{}{}
	}
	return m
}

// fillIdentity answers every watch but the service ones.
func fillIdentity(st *state) {
	st.setDatacenter("dc1")
	st.setLeaf(Leaf{CertPEM: "CERT", KeyPEM: "KEY", SpiffeID: "spiffe://td/ns/default/dc/dc1/svc/ingress"})
	st.setRoots("td", []string{"ROOT"})
	st.setConfig(ConfigDoc{})
}

func TestSnapshotReadiness(t *testing.T) {
	st := newState()
	starts := map[string]*serviceWatch{}
	start := func(name string) *serviceWatch {
		sw := &serviceWatch{cancel: func() {}}
		starts[name] = sw
		return sw
	}
	if _, ready := st.snapshot(true); ready {
		t.Fatal("ready before anything was fetched")
	}
	fillIdentity(st)
	if _, ready := st.snapshot(true); ready {
		t.Fatal("ready before the service list was fetched")
	}
	st.syncServices(names("users", "products"), start)
	if _, ready := st.snapshot(true); ready {
		t.Fatal("first snapshot ready before the services' health was fetched")
	}
	st.setService(starts["users"], Service{Name: "users", Endpoints: []Endpoint{}}, true)
	if _, ready := st.snapshot(true); ready {
		t.Fatal("first snapshot ready with one service's health missing")
	}
	st.setService(starts["products"], Service{Name: "products", Endpoints: []Endpoint{}}, true)
	snap, ready := st.snapshot(true)
	if !ready {
		t.Fatal("not ready once everything was fetched")
	}
	if len(snap.Services) != 2 || snap.Services[0].Name != "products" || snap.Services[1].Name != "users" {
		t.Errorf("services = %+v, want products and users in that order", snap.Services)
	}

	// Later, a service that just appeared is left out until it answers,
	// rather than holding everything back.
	st.syncServices(names("users", "products", "orders"), start)
	if _, ready := st.snapshot(true); ready {
		t.Error("a first snapshot would wait for orders")
	}
	snap, ready = st.snapshot(false)
	if !ready || len(snap.Services) != 2 {
		t.Errorf("later snapshot ready=%v with %d services, want ready with 2", ready, len(snap.Services))
	}
}

func TestSyncServicesStopsRemovedAndIgnoresTheirLateAnswers(t *testing.T) {
	st := newState()
	fillIdentity(st)
	cancelled := map[string]bool{}
	starts := map[string]*serviceWatch{}
	start := func(name string) *serviceWatch {
		sw := &serviceWatch{cancel: func() { cancelled[name] = true }}
		starts[name] = sw
		return sw
	}
	if n := st.syncServices(names("a", "b"), start); n != 2 {
		t.Errorf("watched = %d, want 2", n)
	}
	old := starts["a"]
	st.setService(old, Service{Name: "a"}, true)
	st.setService(starts["b"], Service{Name: "b"}, true)
	if n := st.syncServices(names("b"), start); n != 1 {
		t.Errorf("watched = %d, want 1", n)
	}
	if !cancelled["a"] || cancelled["b"] {
		t.Errorf("cancelled = %v, want only a", cancelled)
	}
	// a comes back: a new watch; the old one's late answer is ignored.
	st.syncServices(names("a", "b"), start)
	if starts["a"] == old {
		t.Fatal("a returning reused the stopped watch")
	}
	st.setService(old, Service{Name: "a", Endpoints: []Endpoint{{Address: "stale", Port: 1}}}, true)
	if snap, _ := st.snapshot(false); len(snap.Services) != 1 || snap.Services[0].Name != "b" {
		t.Errorf("services = %+v, want only b until a's new watch answers", snap.Services)
	}
}

func TestSnapshotLeavesOutNonConnectServices(t *testing.T) {
	st := newState()
	fillIdentity(st)
	sws := map[string]*serviceWatch{}
	st.syncServices(names("legacy", "users"), func(name string) *serviceWatch {
		sws[name] = &serviceWatch{cancel: func() {}}
		return sws[name]
	})
	st.setService(sws["legacy"], Service{Name: "legacy"}, false)
	st.setService(sws["users"], Service{Name: "users", Endpoints: []Endpoint{}}, true)
	snap, ready := st.snapshot(true)
	if !ready || len(snap.Services) != 1 || snap.Services[0].Name != "users" {
		t.Errorf("ready=%v services=%+v, want only users", ready, snap.Services)
	}
}

func TestSnapshotSharesNothingWithTheState(t *testing.T) {
	st := newState()
	fillIdentity(st)
	st.setConfig(ConfigDoc{Present: true, Value: []byte("doc"), ModifyIndex: 3})
	var sw *serviceWatch
	st.syncServices(names("users"), func(string) *serviceWatch { sw = &serviceWatch{cancel: func() {}}; return sw })
	st.setService(sw, Service{Name: "users", Meta: map[string]string{"v": "1"}, Endpoints: []Endpoint{{Address: "a", Port: 1}}}, true)

	first, _ := st.snapshot(false)
	first.Services[0].Meta["v"] = "changed"
	first.Services[0].Endpoints[0].Port = 99
	first.RootsPEM[0] = "changed"
	first.Config.Value[0] = 'X'

	second, _ := st.snapshot(false)
	if second.Services[0].Meta["v"] != "1" || second.Services[0].Endpoints[0].Port != 1 || second.RootsPEM[0] != "ROOT" || string(second.Config.Value) != "doc" {
		t.Errorf("modifying a published snapshot changed the state: %+v", second)
	}
}

// TestContentHashIsCanonical builds the same catalog through answers that
// arrive in different orders and expects the same snapshot and hash.
func TestContentHashIsCanonical(t *testing.T) {
	build := func(order []string) Snapshot {
		st := newState()
		fillIdentity(st)
		sws := map[string]*serviceWatch{}
		st.syncServices(names(order...), func(name string) *serviceWatch {
			sws[name] = &serviceWatch{cancel: func() {}}
			return sws[name]
		})
		for _, name := range order {
			entries := append(
				[]*api.ServiceEntry{},
				entry("n2", "10.0.0.2", name+"-2", "", 21000, map[string]string{"k" + name: "v"}, "passing"),
				entry("n1", "10.0.0.1", name+"-1", "", 21000, map[string]string{"k" + name: "v"}, "passing"),
			)
			if order[0] != "a" {
				entries[0], entries[1] = entries[1], entries[0]
			}
			svc, ok := serviceFromEntries(name, entries)
			st.setService(sws[name], svc, ok)
		}
		snap, ready := st.snapshot(true)
		if !ready {
			t.Fatal("not ready")
		}
		return snap
	}
	one, two := build([]string{"a", "b", "c"}), build([]string{"c", "a", "b"})
	if diff := cmp.Diff(one, two); diff != "" {
		t.Fatalf("snapshots differ (-one +two):\n%s", diff)
	}
	h1, err1 := one.contentHash()
	h2, err2 := two.contentHash()
	if err1 != nil || err2 != nil || h1 != h2 {
		t.Errorf("hashes differ: %x %v, %x %v", h1, err1, h2, err2)
	}
	two.Services[1].Endpoints[0].Port++
	if h3, _ := two.contentHash(); h3 == h1 {
		t.Error("a changed port leaves the hash unchanged")
	}
}

func TestPublishLoopCoalescesAndSkipsUnchanged(t *testing.T) {
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	w := &Watcher{cfg: Config{Coalesce: 150 * time.Millisecond}.withDefaults(), log: slog.New(slog.DiscardHandler), metrics: m}
	st := newState()
	published := make(chan Snapshot, 16)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.publishLoop(ctx, st, func(s Snapshot) { published <- s })
	}()
	defer func() {
		cancel()
		<-done
	}()
	expectNone := func(within time.Duration) {
		t.Helper()
		select {
		case s := <-published:
			t.Fatalf("unexpected publish: %+v", s)
		case <-time.After(within):
		}
	}
	expectOne := func() Snapshot {
		t.Helper()
		select {
		case s := <-published:
			return s
		case <-time.After(5 * time.Second):
			t.Fatal("no publish")
		}
		return Snapshot{}
	}

	// Partial state publishes nothing.
	st.setDatacenter("dc1")
	st.setLeaf(Leaf{CertPEM: "CERT"})
	expectNone(200 * time.Millisecond)

	// The rest arrives in a burst: one publish.
	st.setRoots("td", []string{"ROOT"})
	st.setConfig(ConfigDoc{})
	st.syncServices(names(), func(string) *serviceWatch { return nil })
	first := expectOne()
	if first.TrustDomain != "td" || first.Datacenter != "dc1" {
		t.Errorf("first snapshot = %+v", first)
	}
	expectNone(200 * time.Millisecond)

	// Rewriting the same content publishes nothing.
	st.setRoots("td", []string{"ROOT"})
	st.setLeaf(Leaf{CertPEM: "CERT"})
	expectNone(200 * time.Millisecond)

	// Many changes close together: one publish, of the last state.
	for i := range 10 {
		st.setConfig(ConfigDoc{Present: true, Value: []byte{byte('0' + i)}, ModifyIndex: uint64(i)})
	}
	got := expectOne()
	if string(got.Config.Value) != "9" {
		t.Errorf("coalesced snapshot has config %q, want the last one", got.Config.Value)
	}
	expectNone(200 * time.Millisecond)
	if n := metricValue(t, m.publishes); n != 2 {
		t.Errorf("publishes metric = %v, want 2", n)
	}
}
