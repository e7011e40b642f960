package localenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ScrapeTarget is one endpoint Prometheus scrapes. Job, Instance and
// Labels become the series' labels, so that a test's Prometheus labels
// series as observability/prometheus/prometheus.yml does and the same
// rules and dashboards read them.
type ScrapeTarget struct {
	// Job is the scrape job (users, sidecar, ingress, ...). Required.
	Job string
	// Instance replaces the instance label (host:port by default).
	Instance string
	// Labels are added to every series of the target.
	Labels map[string]string
	// Addr is host:port. Required.
	Addr string
	// Path is the metrics path; empty means /metrics.
	Path string
}

// PrometheusOptions configures StartPrometheus.
type PrometheusOptions struct {
	// Dir holds the generated configuration, the TSDB (data/) and the
	// log. Required.
	Dir string
	// Port is the HTTP port on 127.0.0.1; 0 picks a free one.
	Port int
	// Targets are scraped every ScrapeInterval.
	Targets []ScrapeTarget
	// RuleFiles are loaded as recording and alerting rules (globs are
	// allowed, as in rule_files).
	RuleFiles []string
	// ScrapeInterval also paces rule evaluation; zero means 1 s, short so
	// that a test sees its load in the series within seconds.
	ScrapeInterval time.Duration
}

// Prometheus is a Prometheus server (Debian's package, `make deps`, or a
// binary in .cache/bin). Stop and Start restart it on the same port and
// data directory.
type Prometheus struct {
	opts PrometheusOptions
	bin  string

	restartable
}

// StartPrometheus writes a configuration scraping opts.Targets and starts
// Prometheus, and returns once /-/ready answers.
func StartPrometheus(ctx context.Context, opts PrometheusOptions) (*Prometheus, error) {
	if opts.Dir == "" {
		return nil, errors.New("start prometheus: PrometheusOptions.Dir is empty")
	}
	bin, err := Binary("prometheus")
	if err != nil {
		return nil, fmt.Errorf("start prometheus: %w (make deps installs Debian's prometheus package)", err)
	}
	if opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	if opts.ScrapeInterval <= 0 {
		opts.ScrapeInterval = time.Second
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "data"), 0o755); err != nil {
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	config, err := prometheusConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	if err := os.WriteFile(filepath.Join(opts.Dir, "prometheus.yml"), config, 0o644); err != nil {
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	if err := FreePorts(&opts.Port); err != nil {
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	p := &Prometheus{opts: opts, bin: bin}
	if err := p.Start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// URL is the base URL of the web UI and the HTTP API.
func (p *Prometheus) URL() string { return "http://" + Loopback(p.opts.Port) }

// LogPath is the file of its output.
func (p *Prometheus) LogPath() string { return filepath.Join(p.opts.Dir, "prometheus.log") }

// ConfigPath is the generated configuration.
func (p *Prometheus) ConfigPath() string { return filepath.Join(p.opts.Dir, "prometheus.yml") }

// Start starts the server again after Stop, on the same port and data,
// and returns once it is ready. It does nothing if the server is running.
func (p *Prometheus) Start(ctx context.Context) error {
	return p.startOnce(ctx, func(ctx context.Context) (*Process, error) {
		return launchReady(ctx, Command{
			Name: "prometheus",
			Path: p.bin,
			Args: []string{
				"--config.file=" + p.ConfigPath(),
				"--storage.tsdb.path=" + filepath.Join(p.opts.Dir, "data"),
				"--web.listen-address=" + Loopback(p.opts.Port),
				"--log.level=warn",
				// The latency histograms carry trace ids as exemplars.
				"--enable-feature=exemplar-storage",
			},
			Dir:     p.opts.Dir,
			LogPath: p.LogPath(),
		}, p.ready)
	})
}

// ready is /-/ready answering 200, which Prometheus does once its TSDB is
// open and the configuration loaded.
func (p *Prometheus) ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL()+"/-/ready", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /-/ready: %d", resp.StatusCode)
	}
	return nil
}

// The configuration is written as JSON, which is YAML too: the standard
// library's encoder is enough for it.
type (
	promConfig struct {
		Global        promGlobal      `json:"global"`
		RuleFiles     []string        `json:"rule_files,omitempty"`
		ScrapeConfigs []promScrapeJob `json:"scrape_configs"`
	}
	promGlobal struct {
		ScrapeInterval     string `json:"scrape_interval"`
		ScrapeTimeout      string `json:"scrape_timeout"`
		EvaluationInterval string `json:"evaluation_interval"`
	}
	promScrapeJob struct {
		JobName       string             `json:"job_name"`
		MetricsPath   string             `json:"metrics_path"`
		StaticConfigs []promStaticConfig `json:"static_configs"`
	}
	promStaticConfig struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels,omitempty"`
	}
)

// prometheusConfig groups the targets into one job per (Job, Path), in
// the order the jobs first appear.
func prometheusConfig(opts PrometheusOptions) ([]byte, error) {
	interval := opts.ScrapeInterval.String()
	cfg := promConfig{
		Global:    promGlobal{ScrapeInterval: interval, ScrapeTimeout: interval, EvaluationInterval: interval},
		RuleFiles: opts.RuleFiles,
	}
	jobs := map[string]int{} // job name -> index in ScrapeConfigs
	for _, t := range opts.Targets {
		if t.Job == "" || t.Addr == "" {
			return nil, fmt.Errorf("scrape target %+v: Job and Addr are required", t)
		}
		path := t.Path
		if path == "" {
			path = "/metrics"
		}
		i, ok := jobs[t.Job]
		if !ok {
			i = len(cfg.ScrapeConfigs)
			jobs[t.Job] = i
			cfg.ScrapeConfigs = append(cfg.ScrapeConfigs, promScrapeJob{JobName: t.Job, MetricsPath: path})
		}
		if cfg.ScrapeConfigs[i].MetricsPath != path {
			return nil, fmt.Errorf("job %s: targets with metrics paths %s and %s; one path per job", t.Job, cfg.ScrapeConfigs[i].MetricsPath, path)
		}
		labels := map[string]string{}
		for k, v := range t.Labels {
			labels[k] = v
		}
		if t.Instance != "" {
			labels["instance"] = t.Instance
		}
		cfg.ScrapeConfigs[i].StaticConfigs = append(cfg.ScrapeConfigs[i].StaticConfigs, promStaticConfig{Targets: []string{t.Addr}, Labels: labels})
	}
	return json.MarshalIndent(cfg, "", "  ")
}

// Sample is one series of an instant query's result.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Query evaluates expr now through the HTTP API (/api/v1/query) and
// returns its series; a scalar result is one series without labels. An
// expression Prometheus refuses is an error with its message.
func (p *Prometheus) Query(ctx context.Context, expr string) ([]Sample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.api(ctx, "/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	switch data.ResultType {
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(data.Result, &vec); err != nil {
			return nil, fmt.Errorf("query %q: %w", expr, err)
		}
		out := make([]Sample, 0, len(vec))
		for _, v := range vec {
			out = append(out, Sample{Metric: v.Metric, Value: sampleValue(v.Value)})
		}
		return out, nil
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(data.Result, &v); err != nil {
			return nil, fmt.Errorf("query %q: %w", expr, err)
		}
		return []Sample{{Value: sampleValue(v)}}, nil
	default:
		return nil, fmt.Errorf("query %q: result type %s, want an instant vector or scalar", expr, data.ResultType)
	}
}

// sampleValue parses the value of a [time, "value"] pair; NaN when it is
// not a number.
func sampleValue(pair [2]any) float64 {
	s, _ := pair[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// Exemplar is one exemplar of a series: its labels (a trace id, say) and
// the observed value.
type Exemplar struct {
	Series map[string]string
	Labels map[string]string
	Value  float64
}

// Exemplars returns the exemplars of the series expr selects between start
// and end (/api/v1/query_exemplars); Prometheus keeps them only with
// --enable-feature=exemplar-storage, which Start sets.
func (p *Prometheus) Exemplars(ctx context.Context, expr string, start, end time.Time) ([]Exemplar, error) {
	form := url.Values{
		"query": {expr},
		"start": {strconv.FormatFloat(float64(start.UnixMilli())/1000, 'f', 3, 64)},
		"end":   {strconv.FormatFloat(float64(end.UnixMilli())/1000, 'f', 3, 64)},
	}
	var data []struct {
		SeriesLabels map[string]string `json:"seriesLabels"`
		Exemplars    []struct {
			Labels map[string]string `json:"labels"`
			Value  string            `json:"value"`
		} `json:"exemplars"`
	}
	if err := p.api(ctx, "/api/v1/query_exemplars", form, &data); err != nil {
		return nil, fmt.Errorf("exemplars of %q: %w", expr, err)
	}
	var out []Exemplar
	for _, s := range data {
		for _, e := range s.Exemplars {
			v, _ := strconv.ParseFloat(e.Value, 64)
			out = append(out, Exemplar{Series: s.SeriesLabels, Labels: e.Labels, Value: v})
		}
	}
	return out, nil
}

// api posts form to one endpoint of Prometheus's HTTP API and decodes the
// data of a successful answer into data; a refusal is an error with
// Prometheus's message.
func (p *Prometheus) api(ctx context.Context, path string, form url.Values, data any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL()+path, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&body); err != nil {
		return fmt.Errorf("%d: %w", resp.StatusCode, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("%d: %s", resp.StatusCode, body.Error)
	}
	return json.Unmarshal(body.Data, data)
}
