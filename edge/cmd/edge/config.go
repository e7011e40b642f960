package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portico-mesh/portico/edge/apidocs"
	"github.com/portico-mesh/portico/edge/upstream"
	"github.com/portico-mesh/portico/services/platform/command"
	"github.com/portico-mesh/portico/services/platform/process"
	"github.com/portico-mesh/portico/services/platform/registry"
)

// config is the edge's whole configuration, read once from the
// environment (edge/README.md lists it).
type config struct {
	HTTPAddr string `env:"HTTP_ADDR" envDefault:"127.0.0.1:8090"`
	// Upstreams maps service names to the local listeners of the edge's
	// sidecar: "users=127.0.0.1:19001,products=127.0.0.1:19002".
	Upstreams        string        `env:"EDGE_UPSTREAMS,required"`
	OriginTimeout    time.Duration `env:"EDGE_ORIGIN_TIMEOUT" envDefault:"15s"`
	MaxResponseBytes int64         `env:"EDGE_MAX_RESPONSE_BYTES" envDefault:"8388608"`

	RedisURL        string        `env:"REDIS_URL" envDefault:"redis://127.0.0.1:6379/0"`
	RedisTimeout    time.Duration `env:"EDGE_REDIS_TIMEOUT" envDefault:"250ms"`
	RedisRetryAfter time.Duration `env:"EDGE_REDIS_RETRY_AFTER" envDefault:"1s"`
	CachePrefix     string        `env:"EDGE_CACHE_PREFIX" envDefault:"edge:cache"`
	CacheMaxEntry   int           `env:"EDGE_CACHE_MAX_ENTRY_BYTES" envDefault:"1048576"`

	AMQPURL        string        `env:"AMQP_URL" envDefault:"amqp://guest:guest@127.0.0.1:5672/"`
	AMQPExchange   string        `env:"AMQP_EXCHANGE" envDefault:"portico.events"`
	PurgeQueue     string        `env:"EDGE_PURGE_QUEUE" envDefault:"edge.cache-purge"`
	PurgeDedupeTTL time.Duration `env:"EDGE_PURGE_DEDUPE_TTL" envDefault:"24h"`

	// Consul, when CONSUL_HTTP_ADDR is set, registers the edge like the
	// services (with its sidecar) and discovers API documents in the
	// catalog. Without it, DocsServices lists the documents.
	Consul process.ConsulConfig
	// DocsServices is "service=/path,..."; default: every upstream at
	// /openapi.json. Used only without Consul.
	DocsServices string `env:"EDGE_DOCS_SERVICES"`
	SwaggerUIDir string `env:"EDGE_SWAGGER_UI_DIR"`

	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
	// DebugAddr serves Go's profiles on a loopback address; empty: off.
	DebugAddr       string        `env:"DEBUG_ADDR"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
}

// loadConfig reads the configuration from environ (KEY=value entries).
func loadConfig(environ []string) (config, error) {
	cfg, err := command.ParseEnv[config](environ, nil)
	if err != nil {
		return config{}, err
	}
	if cfg.SwaggerUIDir == "" {
		cfg.SwaggerUIDir = apidocs.DefaultAssetsDir
	}
	if _, err := upstream.ParseAddresses(cfg.Upstreams); err != nil {
		return config{}, fmt.Errorf("EDGE_UPSTREAMS: %w", err)
	}
	if _, err := docSources(cfg); err != nil {
		return config{}, fmt.Errorf("EDGE_DOCS_SERVICES: %w", err)
	}
	if _, err := redis.ParseURL(cfg.RedisURL); err != nil {
		return config{}, fmt.Errorf("REDIS_URL: %w", err)
	}
	// A slice, not a map: the first bad setting named is always the same.
	for _, d := range []struct {
		name  string
		value time.Duration
	}{
		{"EDGE_ORIGIN_TIMEOUT", cfg.OriginTimeout}, {"EDGE_REDIS_TIMEOUT", cfg.RedisTimeout},
		{"EDGE_REDIS_RETRY_AFTER", cfg.RedisRetryAfter}, {"EDGE_PURGE_DEDUPE_TTL", cfg.PurgeDedupeTTL},
		{"SHUTDOWN_TIMEOUT", cfg.ShutdownTimeout},
	} {
		if d.value <= 0 {
			return config{}, fmt.Errorf("%s must be positive", d.name)
		}
	}
	if cfg.CacheMaxEntry <= 0 || cfg.MaxResponseBytes <= 0 {
		return config{}, errors.New("EDGE_CACHE_MAX_ENTRY_BYTES and EDGE_MAX_RESPONSE_BYTES must be positive")
	}
	return cfg, nil
}

// docSources is the static list of documents used without Consul.
func docSources(cfg config) (apidocs.StaticCatalog, error) {
	addrs, err := upstream.ParseAddresses(cfg.Upstreams)
	if err != nil {
		return nil, err
	}
	if cfg.DocsServices == "" {
		var out apidocs.StaticCatalog
		for _, name := range addrs.Names() {
			out = append(out, apidocs.Source{Service: name, Path: "/openapi.json"})
		}
		return out, nil
	}
	var out apidocs.StaticCatalog
	for item := range strings.SplitSeq(cfg.DocsServices, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		name, path, ok := strings.Cut(item, "=")
		name, path = strings.TrimSpace(name), strings.TrimSpace(path)
		if !ok || !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("entry %q: want service=/path", item)
		}
		if _, known := addrs[name]; !known {
			return nil, fmt.Errorf("service %s has no upstream in EDGE_UPSTREAMS", name)
		}
		out = append(out, apidocs.Source{Service: name, Path: path})
	}
	return out, nil
}

// sidecarUpstreams asks the sidecar for a local listener for each
// upstream at a loopback address in EDGE_UPSTREAMS: in the mesh, those
// addresses are the sidecar's and the registration creates them.
func sidecarUpstreams(spec string) []registry.Upstream {
	addrs, err := upstream.ParseAddresses(spec)
	if err != nil {
		return nil // checked when the configuration was loaded
	}
	var out []registry.Upstream
	for _, name := range addrs.Names() {
		host, portText, err := net.SplitHostPort(addrs[name])
		if err != nil {
			continue
		}
		port, err := strconv.Atoi(portText)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			continue
		}
		out = append(out, registry.Upstream{Service: name, LocalPort: port})
	}
	return out
}
