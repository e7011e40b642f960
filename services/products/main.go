// Command products serves Portico's product catalog.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/portico-mesh/portico/migrations"
	"github.com/portico-mesh/portico/services/platform/command"
	"github.com/portico-mesh/portico/services/platform/service"
	"github.com/portico-mesh/portico/services/platform/web"
	"github.com/portico-mesh/portico/services/products/productsapi"
	"github.com/portico-mesh/portico/services/products/productsbus"
	"github.com/portico-mesh/portico/services/products/productsdb"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const serviceName = "products"

// defaultHTTPAddr is this service's port in the local port plan; the
// shared BaseConfig default belongs to no service in particular.
const defaultHTTPAddr = "127.0.0.1:8082"

type config struct {
	service.BaseConfig
	// CacheMaxAge is how long clients and caches may reuse product reads.
	CacheMaxAge time.Duration `env:"PRODUCTS_CACHE_MAX_AGE" envDefault:"30s"`
}

func main() {
	command.Main(command.Spec[config]{
		Name: serviceName, Load: loadConfig, Run: run,
		LogLevel: func(c config) string { return c.LogLevel },
	})
}

// loadConfig reads the configuration from environ (KEY=value entries).
func loadConfig(environ []string) (config, error) {
	vars := env.ToMap(environ)
	if _, ok := vars["HTTP_ADDR"]; !ok {
		vars["HTTP_ADDR"] = defaultHTTPAddr
	}
	var cfg config
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: vars}); err != nil {
		return config{}, err
	}
	if cfg.CacheMaxAge < 0 {
		return config{}, errors.New("PRODUCTS_CACHE_MAX_AGE must not be negative")
	}
	return cfg, nil
}

func run(ctx context.Context, cfg config, log *slog.Logger) error {
	// The document is checked before anything is started.
	openAPI, err := productsapi.OpenAPIJSON()
	if err != nil {
		return err
	}
	rt, err := service.Open(ctx, cfg.BaseConfig, serviceName, version, migrations.Products(), log)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	store := productsdb.NewStore(rt.Pool, rt.Tracing.Propagator)
	bus := productsbus.NewBusiness(store)
	srv := web.New(rt.WebConfig(productsapi.Classify))
	srv.Mount(productsapi.Routes(productsapi.Config{
		Business:    bus,
		CacheMaxAge: cfg.CacheMaxAge,
		OpenAPI:     openAPI,
	})...)
	return rt.Run(ctx, srv)
}
