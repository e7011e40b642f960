package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/services/platform/registry"
)

// fakeAgent answers /v1/agent/self with a node address and records the
// registrations it receives, so the published addresses can be read back
// without a second network namespace.
type fakeAgent struct {
	nodeAddr string

	mu         sync.Mutex
	selfAsked  bool
	registered []api.AgentServiceRegistration
}

func (f *fakeAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/agent/self":
		f.selfAsked = true
		_ = json.NewEncoder(w).Encode(map[string]any{"Member": map[string]any{"Addr": f.nodeAddr}})
	case r.Method == http.MethodPut && r.URL.Path == "/v1/agent/service/register":
		var reg api.AgentServiceRegistration
		if err := json.NewDecoder(r.Body).Decode(&reg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.registered = append(f.registered, reg)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeAgent) last() (reg api.AgentServiceRegistration, selfAsked, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.registered) == 0 {
		return reg, f.selfAsked, false
	}
	return f.registered[len(f.registered)-1], f.selfAsked, true
}

// A service on loopback publishes its sidecar at the agent's node address
// (in a container: the address the pod shares with its agent), and checks
// it there; the service itself stays on loopback. A service on another
// address keeps its sidecar there, and the agent is not asked.
func TestSidecarPublishedAtTheAgentsNodeAddress(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, serviceAddr, nodeAddr string
		wantSidecar                 string
		wantSelfAsked               bool
	}{
		{"pod", "127.0.0.1", "10.1.2.3", "10.1.2.3", true},
		{"loopback agent", "127.0.0.1", "127.0.0.1", "127.0.0.1", true},
		{"routable service", "192.0.2.7", "10.1.2.3", "192.0.2.7", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			agent := &fakeAgent{nodeAddr: tc.nodeAddr}
			srv := httptest.NewServer(agent)
			t.Cleanup(srv.Close)
			r, err := registry.New(registry.Config{
				ConsulAddr: srv.URL, Name: "svc", ID: "svc-1", Address: tc.serviceAddr, Port: 8081,
				SidecarPort: 21081, Resync: time.Hour,
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() { defer close(done); r.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })

			var reg api.AgentServiceRegistration
			var selfAsked bool
			waitFor(t, 10*time.Second, func() error {
				var ok bool
				if reg, selfAsked, ok = agent.last(); !ok {
					return errors.New("no registration reached the agent")
				}
				return nil
			})
			if selfAsked != tc.wantSelfAsked {
				t.Errorf("agent asked for its node address: %v, want %v", selfAsked, tc.wantSelfAsked)
			}
			if reg.Address != tc.serviceAddr {
				t.Errorf("service address %q, want %q", reg.Address, tc.serviceAddr)
			}
			sidecar := reg.Connect.SidecarService
			if sidecar.Address != tc.wantSidecar || sidecar.Port != 21081 {
				t.Errorf("sidecar at %s:%d, want %s:21081", sidecar.Address, sidecar.Port, tc.wantSidecar)
			}
			if want := tc.wantSidecar + ":21081"; len(sidecar.Checks) == 0 || sidecar.Checks[0].TCP != want {
				t.Errorf("sidecar checks %+v, want a TCP check of %s first", sidecar.Checks, want)
			}
		})
	}
}
