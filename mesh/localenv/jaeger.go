package localenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"text/template"
)

// JaegerOptions configures StartJaeger.
type JaegerOptions struct {
	// Dir holds the configuration and jaeger.log. Required.
	Dir string
	// OTLPGRPCPort and OTLPHTTPPort receive spans (OTLP over gRPC and
	// HTTP), QueryPort serves the query API (/api/traces, /api/v3/...),
	// QueryGRPCPort its gRPC twin; zero ports are chosen.
	OTLPGRPCPort, OTLPHTTPPort, QueryPort, QueryGRPCPort int
	// MaxTraces bounds the in-memory store; zero means 100000.
	MaxTraces int
}

// Jaeger is Jaeger v2 (an OpenTelemetry Collector with Jaeger's storage
// and query) as the trace backend: spans in over OTLP, kept in memory,
// read back through the query API. Stop and Start restart it on the same
// ports; the traces do not survive the restart.
//
// The binary is built from the Go module (.ci/install-jaeger.sh), which
// carries no UI assets: the query API is served, the UI is not.
type Jaeger struct {
	opts JaegerOptions
	bin  string

	restartable
}

// StartJaeger writes the configuration, starts Jaeger and returns once
// the query API answers and both OTLP listeners accept connections.
func StartJaeger(ctx context.Context, opts JaegerOptions) (*Jaeger, error) {
	if opts.Dir == "" {
		return nil, errors.New("start jaeger: JaegerOptions.Dir is empty")
	}
	bin, err := Binary("jaeger")
	if err != nil {
		return nil, fmt.Errorf("start jaeger: %w", err)
	}
	if opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, fmt.Errorf("start jaeger: %w", err)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("start jaeger: %w", err)
	}
	if opts.MaxTraces == 0 {
		opts.MaxTraces = 100_000
	}
	if err := FreePorts(&opts.OTLPGRPCPort, &opts.OTLPHTTPPort, &opts.QueryPort, &opts.QueryGRPCPort); err != nil {
		return nil, fmt.Errorf("start jaeger: %w", err)
	}
	j := &Jaeger{opts: opts, bin: bin}
	if err := j.writeConfig(); err != nil {
		return nil, fmt.Errorf("start jaeger: %w", err)
	}
	if err := j.Start(ctx); err != nil {
		return nil, err
	}
	return j, nil
}

// OTLPGRPCAddr is the host:port of OTLP over gRPC, for Envoy's
// OpenTelemetry tracer.
func (j *Jaeger) OTLPGRPCAddr() string { return Loopback(j.opts.OTLPGRPCPort) }

// OTLPGRPCPort is the port of OTLPGRPCAddr.
func (j *Jaeger) OTLPGRPCPort() int { return j.opts.OTLPGRPCPort }

// OTLPEndpoint is the OTEL_EXPORTER_OTLP_ENDPOINT of the processes
// whose SDK exports over OTLP/HTTP (the only protocol our Go processes
// send, services/platform/telemetry): a URL, to which the SDK appends
// /v1/traces.
func (j *Jaeger) OTLPEndpoint() string { return "http://" + Loopback(j.opts.OTLPHTTPPort) }

// QueryURL is the base URL of the query API.
func (j *Jaeger) QueryURL() string { return "http://" + Loopback(j.opts.QueryPort) }

// LogPath is the file that receives Jaeger's output.
func (j *Jaeger) LogPath() string { return filepath.Join(j.opts.Dir, "jaeger.log") }

// ConfigPath is the collector configuration it runs with.
func (j *Jaeger) ConfigPath() string { return filepath.Join(j.opts.Dir, "jaeger.yaml") }

// Start starts Jaeger again after Stop, on the same ports; it does
// nothing while it runs.
func (j *Jaeger) Start(ctx context.Context) error {
	query := j.QueryURL() + "/api/services"
	return j.startOnce(ctx, func(ctx context.Context) (*Process, error) {
		return launchReady(ctx, Command{
			Name: "jaeger", Path: j.bin, Args: []string{"--config", "file:" + j.ConfigPath()},
			// Its own OTEL_* would make it trace itself into whatever
			// collector the caller's shell names.
			Env: environ([]string{"OTEL_"}), Dir: j.opts.Dir, LogPath: j.LogPath(),
		}, func(ctx context.Context) error {
			if err := adminAnswers(ctx, query); err != nil {
				return err
			}
			if err := dialProbe(j.OTLPGRPCAddr())(ctx); err != nil {
				return err
			}
			return dialProbe(Loopback(j.opts.OTLPHTTPPort))(ctx)
		})
	})
}

// jaegerConfig is an OpenTelemetry Collector configuration: the OTLP
// receiver into the memory store, the query API on top of it, every
// listener on loopback at our ports. Jaeger's own metrics and its tracing
// of the query API are off: they would take fixed ports (8888) or send
// spans to a default collector.
var jaegerConfig = template.Must(template.New("jaeger").Parse(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn

extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: {{.MaxTraces}}
  jaeger_query:
    storage:
      traces: memstore
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:{{.QueryPort}}
    grpc:
      endpoint: 127.0.0.1:{{.QueryGRPCPort}}

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{{.OTLPGRPCPort}}
      http:
        endpoint: 127.0.0.1:{{.OTLPHTTPPort}}

processors:
  # Spans reach the store within 200 ms: a test reads the trace it just
  # made.
  batch:
    timeout: 200ms

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`))

func (j *Jaeger) writeConfig() error {
	f, err := os.Create(j.ConfigPath())
	if err != nil {
		return err
	}
	if err := jaegerConfig.Execute(f, j.opts); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// TraceSpan is one span of a trace as the query API returns it.
type TraceSpan struct {
	SpanID    string
	Service   string
	Operation string
	// ParentID is the span's CHILD_OF parent; empty for a root.
	ParentID string
	// Tags are the span's attributes, values as text.
	Tags map[string]string
}

// ErrTraceNotFound is returned by Trace while Jaeger has no span of the
// trace.
var ErrTraceNotFound = errors.New("jaeger: trace not found")

func (s TraceSpan) String() string { return s.Service + "/" + s.Operation }

// Trace reads one trace's spans through the query API
// (GET /api/traces/{id}), with each span's service and parent resolved.
func (j *Jaeger) Trace(ctx context.Context, traceID string) ([]TraceSpan, error) {
	return ReadTrace(ctx, j.QueryURL(), traceID)
}

// ReadTrace is Trace for the Jaeger whose query API is at queryURL, one
// this package did not start (a container's, say).
func ReadTrace(ctx context.Context, queryURL, traceID string) ([]TraceSpan, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, queryURL+"/api/traces/"+url.PathEscape(traceID), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("%w: %s", ErrTraceNotFound, traceID)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("jaeger: GET trace %s: %d %s", traceID, resp.StatusCode, body)
	}
	var out struct {
		Data []struct {
			Spans []struct {
				SpanID        string `json:"spanID"`
				OperationName string `json:"operationName"`
				ProcessID     string `json:"processID"`
				References    []struct {
					RefType string `json:"refType"`
					SpanID  string `json:"spanID"`
				} `json:"references"`
				Tags []struct {
					Key   string `json:"key"`
					Value any    `json:"value"`
				} `json:"tags"`
			} `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
			} `json:"processes"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("jaeger: trace %s: %w", traceID, err)
	}
	var spans []TraceSpan
	for _, t := range out.Data {
		for _, s := range t.Spans {
			span := TraceSpan{SpanID: s.SpanID, Service: t.Processes[s.ProcessID].ServiceName, Operation: s.OperationName, Tags: map[string]string{}}
			for _, r := range s.References {
				if r.RefType == "CHILD_OF" {
					span.ParentID = r.SpanID
				}
			}
			for _, tag := range s.Tags {
				span.Tags[tag.Key] = fmt.Sprint(tag.Value)
			}
			spans = append(spans, span)
		}
	}
	if len(spans) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrTraceNotFound, traceID)
	}
	return spans, nil
}
