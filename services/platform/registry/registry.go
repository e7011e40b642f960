// Package registry registers a service instance with its local Consul agent,
// together with the Envoy sidecar that fronts it in the Connect mesh, and
// removes it again on shutdown.
//
// The agent may be down when the service starts, or restart later (a dev
// agent then forgets everything): Run retries with jittered backoff and
// re-registers whenever the registration disappears, so services tolerate
// any start order and never crash over Consul.
package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/portico-mesh/portico/services/platform/backoff"
)

// Config describes one instance and how it is registered.
type Config struct {
	// ConsulAddr is the agent's HTTP API, host:port or a URL. Required.
	ConsulAddr string
	// Name is the Consul service name ("users", "products"). Required.
	Name string
	// ID is unique per instance; empty means <Name>-<hostname>-<Port>.
	ID string
	// Address and Port are where the service listens. The sidecar reaches
	// the service there, so Address is normally 127.0.0.1. Required.
	Address string
	Port    int
	Version string
	Tags    []string
	// Meta is added to the service metadata, after version and openapi.
	Meta map[string]string
	// OpenAPIPath is published as meta "openapi"; empty leaves it out.
	OpenAPIPath string
	// SidecarPort is the sidecar's public (mTLS) port; 0 lets the agent
	// assign one from its sidecar port range.
	SidecarPort int
	// Upstreams are the services this one calls through its sidecar, each
	// on a local port of its own.
	Upstreams []Upstream
	// CheckPath is the HTTP readiness endpoint the agent polls.
	CheckPath string
	// CheckInterval and CheckTimeout pace the agent's checks, of the
	// service and of its sidecar.
	CheckInterval time.Duration
	CheckTimeout  time.Duration
	// DeregisterAfter removes an instance whose check stayed critical this
	// long (a killed process never deregisters itself).
	DeregisterAfter time.Duration
	// Resync is how often Run checks that the registration still exists.
	Resync time.Duration
	Log    *slog.Logger
}

// Upstream is a service reached through the sidecar at
// 127.0.0.1:LocalPort.
type Upstream struct {
	Service   string
	LocalPort int
}

// Defaults for the zero values of Config.
const (
	DefaultCheckPath       = "/readyz"
	DefaultCheckInterval   = 2 * time.Second
	DefaultCheckTimeout    = time.Second
	DefaultDeregisterAfter = time.Minute
	DefaultResync          = 10 * time.Second
)

// Failed attempts are spaced out with the platform's backoff: from
// minBackoff, doubling, capped at maxBackoff, jittered so that instances
// started together do not retry in lockstep.
const (
	minBackoff = 200 * time.Millisecond
	maxBackoff = 10 * time.Second
)

// callTimeout bounds one call to the agent, which is local and quick when
// it answers at all.
const callTimeout = 5 * time.Second

// Registrar keeps one instance registered while Run runs.
type Registrar struct {
	cfg    Config
	client *api.Client
	id     string
	retry  backoff.Policy
}

// New checks cfg and returns a Registrar. It does not contact the agent.
func New(cfg Config) (*Registrar, error) {
	if cfg.ConsulAddr == "" || cfg.Name == "" || cfg.Address == "" || cfg.Port <= 0 {
		return nil, errors.New("registry: ConsulAddr, Name, Address and Port are required")
	}
	if cfg.CheckPath == "" {
		cfg.CheckPath = DefaultCheckPath
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = DefaultCheckInterval
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = DefaultCheckTimeout
	}
	if cfg.DeregisterAfter <= 0 {
		cfg.DeregisterAfter = DefaultDeregisterAfter
	}
	if cfg.Resync <= 0 {
		cfg.Resync = DefaultResync
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	apiCfg, err := clientConfig(cfg.ConsulAddr)
	if err != nil {
		return nil, err
	}
	client, err := api.NewClient(apiCfg)
	if err != nil {
		return nil, fmt.Errorf("registry: consul client: %w", err)
	}
	id := cfg.ID
	if id == "" {
		id = DefaultID(cfg.Name, cfg.Port)
	}
	return &Registrar{cfg: cfg, client: client, id: id, retry: backoff.Policy{Min: minBackoff, Max: maxBackoff}}, nil
}

// clientConfig accepts "host:port", "http://host:port" or
// "https://host:port", like CONSUL_HTTP_ADDR.
func clientConfig(addr string) (*api.Config, error) {
	c := &api.Config{Address: addr, Scheme: "http"}
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("registry: consul address %q: not host:port or a URL", addr)
		}
		c.Address, c.Scheme = u.Host, u.Scheme
	}
	if _, _, err := net.SplitHostPort(c.Address); err != nil {
		return nil, fmt.Errorf("registry: consul address %q: %w", addr, err)
	}
	return c, nil
}

// DefaultID is the instance id used when none is configured: unique per
// machine and port, and the same after a restart on that port, so a
// restarted instance replaces its own registration.
func DefaultID(name string, port int) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return fmt.Sprintf("%s-%s-%d", name, host, port)
}

// ID returns the instance's service id.
func (r *Registrar) ID() string { return r.id }

// SidecarID returns the id of the instance's sidecar proxy, the value for
// `consul connect envoy -sidecar-for`'s counterpart -proxy-id.
func (r *Registrar) SidecarID() string { return r.id + "-sidecar-proxy" }

// Run registers the instance, retrying until it succeeds, then keeps it
// registered until ctx ends. It does not deregister: the caller calls
// Deregister when the service begins to shut down, before it stops
// serving, so that traffic drains away first. Failures are logged and
// retried, never returned: Consul being away must not stop the service.
func (r *Registrar) Run(ctx context.Context) {
	attempt := 0
	registered := false
	for {
		var err error
		if registered {
			registered, err = r.present(ctx)
		}
		if !registered && err == nil {
			if err = r.register(ctx); err == nil {
				registered = true
				r.cfg.Log.InfoContext(ctx, "registered with consul", "id", r.id, "consul", r.cfg.ConsulAddr)
			}
		}
		wait := r.cfg.Resync
		if err == nil {
			attempt = 0 // the agent answered: the backoff starts over
		} else if ctx.Err() == nil {
			attempt++
			wait = r.retry.Delay(attempt)
			r.cfg.Log.WarnContext(ctx, "consul registration failed; retrying", "id", r.id, "attempt", attempt,
				"retry_in", wait.Round(time.Millisecond).String(), "error", err.Error())
		}
		if !backoff.Wait(ctx, wait) {
			return
		}
	}
}

// present reports whether the agent still has the registration; a dev
// agent that restarted has lost it.
func (r *Registrar) present(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, _, err := r.client.Agent().Service(r.id, (&api.QueryOptions{}).WithContext(ctx))
	if err == nil {
		return true, nil
	}
	if isNotFound(err) {
		r.cfg.Log.WarnContext(ctx, "consul lost the registration; registering again", "id", r.id)
		return false, nil
	}
	return true, fmt.Errorf("look up registration %s: %w", r.id, err)
}

// register registers the service and its sidecar. When the sidecar port is
// left to the agent, a second registration pins the assigned port so that
// the sidecar's own checks can name it.
func (r *Registrar) register(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	agent := r.client.Agent()
	sidecarAddress, err := r.sidecarAddress(ctx)
	if err != nil {
		return err
	}
	sidecarPort := r.cfg.SidecarPort
	if sidecarPort == 0 {
		if err := agent.ServiceRegisterOpts(r.registration(sidecarAddress, 0), api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)); err != nil {
			return fmt.Errorf("register %s: %w", r.id, err)
		}
		proxy, _, err := agent.Service(r.SidecarID(), (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("read the sidecar port of %s: %w", r.id, err)
		}
		sidecarPort = proxy.Port
	}
	if err := agent.ServiceRegisterOpts(r.registration(sidecarAddress, sidecarPort), api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)); err != nil {
		return fmt.Errorf("register %s: %w", r.id, err)
	}
	return nil
}

// sidecarAddress is where the proxies of other nodes reach this instance's
// sidecar. A service on loopback is reachable only by its own sidecar, so
// the sidecar is published at its agent's node address instead: on a
// loopback agent (make up, the tests) that is loopback again, and in a
// container sharing its network namespace with its agent it is the
// container's address, which other containers can dial. A service on any
// other address keeps its sidecar there, as before.
func (r *Registrar) sidecarAddress(ctx context.Context) (string, error) {
	if ip := net.ParseIP(r.cfg.Address); ip == nil || !ip.IsLoopback() {
		return r.cfg.Address, nil
	}
	var self struct{ Member struct{ Addr string } }
	if _, err := r.client.Raw().Query("/v1/agent/self", &self, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		return "", fmt.Errorf("read the agent's node address: %w", err)
	}
	if self.Member.Addr == "" {
		return r.cfg.Address, nil
	}
	return self.Member.Addr, nil
}

// registration builds the agent registration, with the sidecar published
// at sidecarAddress. With sidecarPort 0 the agent assigns the port and adds
// its default sidecar checks, which poll every 10 s; with a port the
// sidecar gets checks paced like the service's, so a new or recovered
// instance takes traffic within seconds.
func (r *Registrar) registration(sidecarAddress string, sidecarPort int) *api.AgentServiceRegistration {
	meta := map[string]string{}
	if r.cfg.Version != "" {
		meta["version"] = r.cfg.Version
	}
	if r.cfg.OpenAPIPath != "" {
		meta["openapi"] = r.cfg.OpenAPIPath
	}
	for k, v := range r.cfg.Meta {
		meta[k] = v
	}
	interval := r.cfg.CheckInterval.String()
	timeout := r.cfg.CheckTimeout.String()
	sidecar := &api.AgentServiceRegistration{Address: sidecarAddress, Port: sidecarPort, Tags: r.cfg.Tags, Meta: meta}
	if len(r.cfg.Upstreams) > 0 {
		sidecar.Proxy = &api.AgentServiceConnectProxyConfig{}
		for _, u := range r.cfg.Upstreams {
			sidecar.Proxy.Upstreams = append(sidecar.Proxy.Upstreams, api.Upstream{
				DestinationName: u.Service, LocalBindAddress: "127.0.0.1", LocalBindPort: u.LocalPort,
			})
		}
	}
	if sidecarPort != 0 {
		sidecar.Checks = api.AgentServiceChecks{
			{
				Name:     "sidecar listening",
				TCP:      net.JoinHostPort(sidecarAddress, strconv.Itoa(sidecarPort)),
				Interval: interval,
				Timeout:  timeout,
				// A sidecar that stays down is as gone as its service.
				DeregisterCriticalServiceAfter: r.cfg.DeregisterAfter.String(),
			},
			// The sidecar is only as healthy as the service behind it:
			// an unready instance drops out of its callers' endpoints.
			{Name: "service " + r.id, AliasService: r.id},
		}
	}
	return &api.AgentServiceRegistration{
		ID:      r.id,
		Name:    r.cfg.Name,
		Address: r.cfg.Address,
		Port:    r.cfg.Port,
		Tags:    r.cfg.Tags,
		Meta:    meta,
		Check: &api.AgentServiceCheck{
			Name:                           r.cfg.Name + " ready",
			HTTP:                           "http://" + net.JoinHostPort(r.cfg.Address, strconv.Itoa(r.cfg.Port)) + r.cfg.CheckPath,
			Method:                         "GET",
			Interval:                       interval,
			Timeout:                        timeout,
			DeregisterCriticalServiceAfter: r.cfg.DeregisterAfter.String(),
		},
		Connect: &api.AgentServiceConnect{SidecarService: sidecar},
	}
}

// Deregister removes the instance and its sidecar from the agent. An agent
// that is down or has forgotten the instance is not an error worth more
// than a log line: its check would expire the registration anyway.
func (r *Registrar) Deregister(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	agent := r.client.Agent()
	q := (&api.QueryOptions{}).WithContext(ctx)
	if err := agent.ServiceDeregisterOpts(r.id, q); err != nil && !isNotFound(err) {
		return fmt.Errorf("deregister %s: %w", r.id, err)
	}
	// The agent removes a sidecar registered with its service; this
	// covers agents that kept it anyway.
	if err := agent.ServiceDeregisterOpts(r.SidecarID(), q); err != nil && !isNotFound(err) {
		return fmt.Errorf("deregister %s: %w", r.SidecarID(), err)
	}
	r.cfg.Log.InfoContext(ctx, "deregistered from consul", "id", r.id)
	return nil
}

func isNotFound(err error) bool {
	var status api.StatusError
	return errors.As(err, &status) && status.Code == http.StatusNotFound
}
