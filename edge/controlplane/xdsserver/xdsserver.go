// Package xdsserver serves the translated resources to Envoy over ADS
// (gRPC). It keeps one versioned snapshot per group of clients, replaces
// it only when the content changes, and records what each client
// acknowledged or rejected.
package xdsserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretgrpc "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	"github.com/portico-mesh/portico/edge/controlplane/xdsresources"
)

// Node clusters (Envoy's --service-cluster, or the node's cluster field)
// select which snapshot a client receives.
const (
	IngressGroup   = "ingress"
	RateLimitGroup = "ratelimit"
)

// Server is the ADS server.
type Server struct {
	log   *slog.Logger
	cache cachev3.SnapshotCache
	xds   serverv3.Server

	mu       sync.Mutex
	versions map[string]string // group -> version set
	acked    map[string]string // node id -> last version acknowledged for listeners+routes+clusters+endpoints
	ackWait  chan struct{}     // closed and replaced on every ACK

	updates *prometheus.CounterVec
	nacks   *prometheus.CounterVec
	streams prometheus.Gauge
}

// groupByCluster hashes a node to its cluster name, so every ingress
// Envoy shares one snapshot whatever its node id. Clients that send no
// cluster (envoyproxy/ratelimit sends only an id) are grouped by id.
type groupByCluster struct{}

func (groupByCluster) ID(node *core.Node) string {
	if c := node.GetCluster(); c != "" {
		return c
	}
	return node.GetId()
}

// New returns a server with empty snapshots; Envoys that connect before
// the first Update wait for it.
func New(ctx context.Context, log *slog.Logger, reg prometheus.Registerer) *Server {
	s := &Server{
		log:      log,
		cache:    cachev3.NewSnapshotCache(true, groupByCluster{}, slogAdapter{log}),
		versions: map[string]string{},
		acked:    map[string]string{},
		ackWait:  make(chan struct{}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "controlplane_snapshot_updates_total",
			Help: "Snapshots set, by client group; repeats of unchanged content are not counted.",
		}, []string{"group"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "controlplane_xds_nacks_total",
			Help: "Configurations an xDS client rejected, by resource type.",
		}, []string{"type"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "controlplane_xds_streams",
			Help: "Open xDS streams.",
		}),
	}
	reg.MustRegister(s.updates, s.nacks, s.streams)
	s.xds = serverv3.NewServer(ctx, s.cache, serverv3.CallbackFuncs{
		StreamOpenFunc: func(context.Context, int64, string) error {
			s.streams.Inc()
			return nil
		},
		StreamClosedFunc:  func(int64, *core.Node) { s.streams.Dec() },
		StreamRequestFunc: s.onRequest,
	})
	return s
}

// Register adds the ADS and SDS services to a gRPC server.
func (s *Server) Register(g *grpc.Server) {
	discovery.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
	secretgrpc.RegisterSecretDiscoveryServiceServer(g, s.xds)
}

// Serve runs a gRPC server on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	g := grpc.NewServer(
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 5 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	s.Register(g)
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		g.GracefulStop()
	}()
	err := g.Serve(ln)
	<-done
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Update sets the snapshots of both groups from res, each only when its
// content differs from what is set. It returns the ingress version.
func (s *Server) Update(ctx context.Context, res *xdsresources.Set) (string, error) {
	ingress := map[resourcev3.Type][]types.Resource{
		resourcev3.ListenerType: res.Listeners,
		resourcev3.RouteType:    res.Routes,
		resourcev3.ClusterType:  res.Clusters,
		resourcev3.EndpointType: res.Endpoints,
		resourcev3.SecretType:   res.Secrets,
	}
	version, err := s.set(ctx, IngressGroup, ingress)
	if err != nil {
		return "", err
	}
	if _, err := s.set(ctx, RateLimitGroup, map[resourcev3.Type][]types.Resource{
		resourcev3.RateLimitConfigType: res.RateLimitConfigs,
	}); err != nil {
		return "", err
	}
	return version, nil
}

func (s *Server) set(ctx context.Context, group string, resources map[resourcev3.Type][]types.Resource) (string, error) {
	version, err := contentVersion(resources)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.versions[group] == version {
		return version, nil
	}
	snap, err := cachev3.NewSnapshot(version, resources)
	if err != nil {
		return "", fmt.Errorf("snapshot %s: %w", group, err)
	}
	if err := snap.Consistent(); err != nil {
		return "", fmt.Errorf("snapshot %s: %w", group, err)
	}
	if err := s.cache.SetSnapshot(ctx, group, snap); err != nil {
		return "", fmt.Errorf("snapshot %s: %w", group, err)
	}
	s.versions[group] = version
	s.updates.WithLabelValues(group).Inc()
	s.log.InfoContext(ctx, "snapshot set", "group", group, "version", version)
	return version, nil
}

// contentVersion is a digest of the resources in deterministic wire form,
// so equal content always has the same version.
func contentVersion(resources map[resourcev3.Type][]types.Resource) (string, error) {
	h := sha256.New()
	for _, typ := range []resourcev3.Type{
		resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType,
		resourcev3.EndpointType, resourcev3.SecretType, resourcev3.RateLimitConfigType,
	} {
		for _, r := range resources[typ] {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
			if err != nil {
				return "", fmt.Errorf("version: %w", err)
			}
			fmt.Fprintf(h, "%s:%d:", typ, len(b))
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// onRequest sees every discovery request: an error detail is a NACK; a
// version with a nonce and no error is an ACK.
func (s *Server) onRequest(_ int64, req *discovery.DiscoveryRequest) error {
	node := req.GetNode().GetId()
	if req.GetErrorDetail() != nil {
		s.nacks.WithLabelValues(req.GetTypeUrl()).Inc()
		s.log.Error("xds configuration rejected", "node", node, "type", req.GetTypeUrl(),
			"version", req.GetVersionInfo(), "error", req.GetErrorDetail().GetMessage())
		return nil
	}
	if req.GetResponseNonce() == "" || req.GetTypeUrl() != resourcev3.EndpointType {
		return nil
	}
	// Endpoints come last in ADS order, so their ACK means the whole
	// version is applied.
	s.mu.Lock()
	s.acked[node] = req.GetVersionInfo()
	close(s.ackWait)
	s.ackWait = make(chan struct{})
	s.mu.Unlock()
	return nil
}

// Version is the version of the snapshot set for group, "" before the first.
func (s *Server) Version(group string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.versions[group]
}

// WaitAcked blocks until node acknowledged version, or ctx ends.
func (s *Server) WaitAcked(ctx context.Context, node, version string) error {
	for {
		s.mu.Lock()
		got, wait := s.acked[node], s.ackWait
		s.mu.Unlock()
		if got == version {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s acked %q, waiting for %q: %w", node, got, version, ctx.Err())
		case <-wait:
		}
	}
}

// slogAdapter lets the snapshot cache log through slog at debug level.
type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Debugf(format string, args ...any) { a.log.Debug(fmt.Sprintf(format, args...)) }
func (a slogAdapter) Infof(format string, args ...any)  { a.log.Debug(fmt.Sprintf(format, args...)) }
func (a slogAdapter) Warnf(format string, args ...any)  { a.log.Warn(fmt.Sprintf(format, args...)) }
func (a slogAdapter) Errorf(format string, args ...any) { a.log.Error(fmt.Sprintf(format, args...)) }
