// Package upstream forwards the edge's requests to the services, through
// the local listeners of the edge's sidecar (in tests, the services'
// own addresses).
package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-mesh/portico/edge/httpcache"
	"github.com/portico-mesh/portico/services/platform/backoff"
	"github.com/portico-mesh/portico/services/platform/problem"
	"github.com/portico-mesh/portico/services/platform/telemetry"
)

// Sentinel errors; Classify turns them into problems.
var (
	// ErrUnknownUpstream: the request names a service the edge has no
	// upstream for (the ingress and the edge are configured differently).
	ErrUnknownUpstream = errors.New("unknown upstream")
	// ErrUnreachable: the upstream did not answer.
	ErrUnreachable = errors.New("upstream unreachable")
	// ErrTimeout: the upstream did not answer in time.
	ErrTimeout = errors.New("upstream timed out")
	// ErrTooLarge: the upstream's response is larger than the edge reads.
	ErrTooLarge = errors.New("upstream response too large")
)

// Addresses maps a service name to host:port.
type Addresses map[string]string

var serviceName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ParseAddresses reads "users=127.0.0.1:19001,products=127.0.0.1:19002".
func ParseAddresses(s string) (Addresses, error) {
	out := Addresses{}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, addr, ok := strings.Cut(item, "=")
		name, addr = strings.TrimSpace(name), strings.TrimSpace(addr)
		if !ok || !serviceName.MatchString(name) {
			return nil, fmt.Errorf("upstream %q: want name=host:port with a lower-case service name", item)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("upstream %s: address %q: %w", name, addr, err)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("upstream %s is listed twice", name)
		}
		out[name] = addr
	}
	if len(out) == 0 {
		return nil, errors.New("no upstreams")
	}
	return out, nil
}

// Names returns the service names in order.
func (a Addresses) Names() []string {
	names := make([]string, 0, len(a))
	for n := range a {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Config configures a Proxy.
type Config struct {
	Addresses Addresses
	// DialTimeout bounds connecting (default 2s).
	DialTimeout time.Duration
	// MaxResponseBytes is the largest response body read (default 8 MiB).
	MaxResponseBytes int64
	// RefusedRetryFor is how long a refused connection to the sidecar's
	// listener is tried again (default 4s, within the request's deadline).
	// A refused connect sent nothing, so a retry is safe for any method;
	// and the sidecar's listener is briefly absent when its xDS server
	// restarts: measured in e2e/faults, Consul's agent restarted with its
	// data sent the edge's sidecar its first configuration without the
	// products upstream (that watch's first fetch failed, "no cluster ca
	// config set"), and the listener was gone for 2.5 s.
	RefusedRetryFor time.Duration
	// Tracing makes each forwarded request a client span ("<method>",
	// with the upstream, address and status), the child of the edge's
	// request span, and writes its context into the forwarded headers
	// (W3C traceparent), so the service's spans are its children. Zero
	// Tracing makes no span and forwards the request's own context.
	Tracing telemetry.Tracing
}

// Proxy sends requests to upstreams over plain HTTP/1.1 on loopback: the
// sidecar adds mTLS on the way.
type Proxy struct {
	cfg        Config
	client     *http.Client
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	// traced is false with tracing off: the origin call then starts no
	// span at all, not even a no-op one (it would cost a context each).
	traced bool
}

// New returns a proxy; close it with CloseIdleConnections.
func New(cfg Config) *Proxy {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = 8 << 20
	}
	if cfg.RefusedRetryFor <= 0 {
		cfg.RefusedRetryFor = 4 * time.Second
	}
	transport := &http.Transport{
		// Never a proxy from the environment: upstreams are local listeners.
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Proxy{cfg: cfg, tracer: cfg.Tracing.Tracer(scope), propagator: cfg.Tracing.Propagation(), traced: cfg.Tracing.Enabled(), client: &http.Client{
		Transport: transport,
		// Redirects are the client's business; the edge passes them on.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// scope names the instrumentation of the proxy's spans.
const scope = "github.com/portico-mesh/portico/edge/upstream"

// CloseIdleConnections releases kept-alive connections.
func (p *Proxy) CloseIdleConnections() { p.client.CloseIdleConnections() }

// Address returns the address of upstream name.
func (p *Proxy) Address(name string) (string, bool) {
	addr, ok := p.cfg.Addresses[name]
	return addr, ok
}

// RoundTrip implements httpcache.Origin. ctx must carry the deadline.
func (p *Proxy) RoundTrip(ctx context.Context, req *httpcache.Request) (*httpcache.Response, error) {
	addr, ok := p.cfg.Addresses[req.Upstream]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownUpstream, req.Upstream)
	}
	if !p.traced {
		return p.forward(ctx, addr, req)
	}
	ctx, span := p.tracer.Start(ctx, req.Method, trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(
			semconv.HTTPRequestMethodKey.String(req.Method),
			semconv.URLPath(req.Path()),
			attrUpstream.String(req.Upstream),
		)
		if host, port, err := net.SplitHostPort(addr); err == nil {
			span.SetAttributes(semconv.ServerAddress(host))
			if n, err := strconv.Atoi(port); err == nil {
				span.SetAttributes(semconv.ServerPort(n))
			}
		}
	}
	resp, err := p.forward(ctx, addr, req)
	if span.IsRecording() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "no response")
		} else {
			span.SetAttributes(semconv.HTTPResponseStatusCode(resp.Status))
			if resp.Status >= 500 {
				span.SetStatus(codes.Error, "")
			}
		}
	}
	return resp, err
}

// attrUpstream is the span attribute naming the service forwarded to.
const attrUpstream = attribute.Key("portico.upstream")

// refusedBackoff spaces the retries of a refused connection.
var refusedBackoff = backoff.Policy{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond}

// send sends req to addr with the trace context of ctx, again while the
// connection is refused, for up to RefusedRetryFor.
func (p *Proxy) send(ctx context.Context, addr string, req *httpcache.Request) (*http.Response, error) {
	giveUp := time.Now().Add(p.cfg.RefusedRetryFor)
	for failures := 1; ; failures++ {
		var body io.Reader
		if len(req.Body) > 0 {
			body = bytes.NewReader(req.Body)
		}
		hreq, err := http.NewRequestWithContext(ctx, req.Method, "http://"+addr+req.URI, body)
		if err != nil {
			return nil, err
		}
		hreq.Header = req.Header.Clone()
		// Go's transport asks for gzip and decodes it when the client did
		// not ask itself: the edge stores and serves identity bodies and
		// leaves compression to the ingress.
		hreq.Header.Del("Accept-Encoding")
		// Replaces the context the request arrived with (the edge's
		// sidecar's) with the edge's own.
		p.propagator.Inject(ctx, propagation.HeaderCarrier(hreq.Header))
		resp, err := p.client.Do(hreq)
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
			return resp, err
		}
		// Retry only if the wait ends before the budget and the
		// request's deadline do: a caller out of time hears the refusal.
		wait := refusedBackoff.Delay(failures)
		next := time.Now().Add(wait)
		if deadline, ok := ctx.Deadline(); next.After(giveUp) || (ok && next.After(deadline)) || !backoff.Wait(ctx, wait) {
			return nil, err
		}
	}
}

// forward sends req to addr and reads the response.
func (p *Proxy) forward(ctx context.Context, addr string, req *httpcache.Request) (*httpcache.Response, error) {
	resp, err := p.send(ctx, addr, req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: %s: %w", ErrTimeout, req.Upstream, err)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, req.Upstream, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, p.cfg.MaxResponseBytes+1))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: %s: %w", ErrTimeout, req.Upstream, err)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, req.Upstream, err)
	}
	if int64(len(b)) > p.cfg.MaxResponseBytes {
		return nil, fmt.Errorf("%w: %s", ErrTooLarge, req.Upstream)
	}
	return &httpcache.Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// Classify turns the proxy's errors into the problems clients see; it
// is the edge's web.Config.Classify.
func Classify(err error) *problem.Problem {
	switch {
	case errors.Is(err, ErrUnknownUpstream):
		return problem.New(problem.TypeUnavailable, http.StatusBadGateway, "the edge has no upstream for this route")
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return problem.New(problem.TypeUnavailable, http.StatusGatewayTimeout, "the service did not answer in time")
	case errors.Is(err, ErrUnreachable):
		return problem.New(problem.TypeUnavailable, http.StatusBadGateway, "the service did not answer")
	case errors.Is(err, ErrTooLarge):
		return problem.New(problem.TypeUnavailable, http.StatusBadGateway, "the service's response is too large")
	}
	return nil
}
