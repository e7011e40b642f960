// Package reconcile joins the control plane's stages: for every catalog
// snapshot it picks the edge configuration (the one in KV when it is
// valid, else the last good one), builds the model, translates it and
// hands the resources to the xDS server. A bad document never reaches
// Envoy; why it was rejected is logged, counted and written next to it.
package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-mesh/portico/edge/controlplane/catalog"
	"github.com/portico-mesh/portico/edge/controlplane/edgeconfig"
	"github.com/portico-mesh/portico/edge/controlplane/ir"
	"github.com/portico-mesh/portico/edge/controlplane/irbuild"
	"github.com/portico-mesh/portico/edge/controlplane/translate"
	"github.com/portico-mesh/portico/edge/controlplane/xdsresources"
)

// Publisher receives translated resources (the xDS server).
type Publisher interface {
	Update(ctx context.Context, res *xdsresources.Set) (string, error)
}

// StatusWriter records the outcome of a configuration revision where the
// operator who wrote it looks (a KV key next to the document).
type StatusWriter interface {
	WriteStatus(ctx context.Context, s ConfigStatus) error
}

// ConfigStatus is what is known about the configuration in use.
type ConfigStatus struct {
	// Source is "kv" or "default".
	Source string `json:"source"`
	// ModifyIndex is the KV revision this status is about.
	ModifyIndex uint64 `json:"modifyIndex"`
	Accepted    bool   `json:"accepted"`
	Error       string `json:"error,omitempty"`
	// ServingIndex is the KV revision in use (0 for the default).
	ServingIndex uint64    `json:"servingIndex"`
	Time         time.Time `json:"time"`
}

// Config wires a Reconciler.
type Config struct {
	Publisher Publisher
	Status    StatusWriter // optional
	Listener  ir.Listener
	Ingress   string
	RateLimit *ir.RateLimitService
	// TracingCollector is the OTLP/gRPC collector (host:port) the
	// ingress sends spans to unless the document names one.
	TracingCollector string
	Log              *slog.Logger
	Registerer       prometheus.Registerer
	// Now is the clock for status times; default time.Now.
	Now func() time.Time
}

// Reconciler applies snapshots. Apply is called from one goroutine;
// Model may be called from any.
type Reconciler struct {
	cfg Config

	builtin edgeconfig.Document

	// Only the applying goroutine touches these.
	good        edgeconfig.Document
	goodIndex   uint64
	seenIndex   uint64
	seenPresent bool

	mu      sync.RWMutex
	model   *ir.Xds
	version string

	rejected prometheus.Counter
	failures prometheus.Counter
	applied  prometheus.Gauge
}

// New returns a Reconciler serving the built-in default configuration
// until a valid document appears in KV.
func New(cfg Config) (*Reconciler, error) {
	doc, err := edgeconfig.Parse(edgeconfig.Default())
	if err != nil {
		return nil, fmt.Errorf("built-in edge configuration: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	r := &Reconciler{
		cfg:     cfg,
		builtin: doc,
		good:    doc,
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "controlplane_config_rejected_total",
			Help: "Edge configuration revisions rejected as invalid; the last good one kept serving.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "controlplane_reconcile_failures_total",
			Help: "Snapshots that could not be turned into Envoy configuration.",
		}),
		applied: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "controlplane_config_serving_index",
			Help: "KV modify index of the edge configuration in use; 0 for the built-in default.",
		}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{r.rejected, r.failures, r.applied} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// Apply turns one snapshot into Envoy configuration.
func (r *Reconciler) Apply(ctx context.Context, snap catalog.Snapshot) error {
	r.selectDocument(ctx, snap.Config)
	model, err := irbuild.Build(irbuild.Inputs{
		Document:   r.good,
		Listener:   r.cfg.Listener,
		Datacenter: snap.Datacenter,
		Identity: ir.Identity{
			CertPEM: snap.Leaf.CertPEM, KeyPEM: snap.Leaf.KeyPEM,
			RootsPEM: snap.RootsPEM, TrustDomain: snap.TrustDomain,
		},
		Services:         services(snap.Services),
		Ingress:          r.cfg.Ingress,
		RateLimit:        r.cfg.RateLimit,
		TracingCollector: r.cfg.TracingCollector,
	})
	if err == nil {
		err = r.publish(ctx, model)
	}
	if err != nil {
		r.failures.Inc()
		return fmt.Errorf("reconcile: %w", err)
	}
	return nil
}

func (r *Reconciler) publish(ctx context.Context, model *ir.Xds) error {
	res, err := translate.Translate(model)
	if err != nil {
		return err
	}
	version, err := r.cfg.Publisher.Update(ctx, res)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.model, r.version = model, version
	r.mu.Unlock()
	return nil
}

// selectDocument adopts a new KV revision when it is valid and reports
// the outcome once per revision.
func (r *Reconciler) selectDocument(ctx context.Context, doc catalog.ConfigDoc) {
	if doc.Present == r.seenPresent && doc.ModifyIndex == r.seenIndex {
		return
	}
	r.seenPresent, r.seenIndex = doc.Present, doc.ModifyIndex
	status := ConfigStatus{Source: "kv", ModifyIndex: doc.ModifyIndex, Time: r.cfg.Now().UTC()}
	if !doc.Present {
		// The operator removed the override: back to the built-in default.
		r.good, r.goodIndex = r.builtin, 0
		r.cfg.Log.InfoContext(ctx, "edge configuration: using the built-in default")
		r.applied.Set(0)
		return
	}
	parsed, err := edgeconfig.Parse(doc.Value)
	if err != nil {
		r.rejected.Inc()
		status.Error = err.Error()
		r.cfg.Log.ErrorContext(ctx, "edge configuration rejected; the last good one keeps serving",
			"modify_index", doc.ModifyIndex, "serving_index", r.goodIndex, "error", err.Error())
	} else {
		r.good, r.goodIndex = parsed, doc.ModifyIndex
		status.Accepted = true
		r.applied.Set(float64(doc.ModifyIndex))
		r.cfg.Log.InfoContext(ctx, "edge configuration accepted", "modify_index", doc.ModifyIndex)
	}
	status.ServingIndex = r.goodIndex
	if r.cfg.Status != nil {
		if err := r.cfg.Status.WriteStatus(ctx, status); err != nil {
			r.cfg.Log.WarnContext(ctx, "edge configuration status not written", "error", err.Error())
		}
	}
}

func services(in []catalog.Service) []irbuild.Service {
	out := make([]irbuild.Service, 0, len(in))
	for _, s := range in {
		eps := make([]ir.Endpoint, 0, len(s.Endpoints))
		for _, e := range s.Endpoints {
			eps = append(eps, ir.Endpoint{Address: e.Address, Port: uint32(e.Port)})
		}
		out = append(out, irbuild.Service{Name: s.Name, Endpoints: eps})
	}
	return out
}

// ErrNoModel is returned by ModelJSON before the first snapshot applied.
var ErrNoModel = errors.New("no configuration applied yet")

// ModelJSON is the model in use, for the read-only admin endpoint, with
// the private key redacted.
func (r *Reconciler) ModelJSON() ([]byte, string, error) {
	r.mu.RLock()
	model, version := r.model, r.version
	r.mu.RUnlock()
	if model == nil {
		return nil, "", ErrNoModel
	}
	redacted := *model
	redacted.Identity.KeyPEM = "[redacted]"
	b, err := json.MarshalIndent(redacted, "", "  ")
	return b, version, err
}
