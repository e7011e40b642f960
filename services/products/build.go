// Package products wires the products service: Build turns a database
// pool and the process's HTTP configuration into the service's server.
// The command (services/cmd/products), the service's own tests and the
// whole-stack tests all call Build, so they run the same service.
//
// The service itself is three layers, each in its own package:
// productsapi (HTTP), productsbus (rules, owning its Storer) and
// productsdb (PostgreSQL).
package products

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/portico-mesh/portico/services/platform/idempotency"
	"github.com/portico-mesh/portico/services/platform/outbox"
	"github.com/portico-mesh/portico/services/platform/service"
	"github.com/portico-mesh/portico/services/platform/web"
	"github.com/portico-mesh/portico/services/products/productsapi"
	"github.com/portico-mesh/portico/services/products/productsbus"
	"github.com/portico-mesh/portico/services/products/productsdb"
)

// Name names the service in the mesh, logs, metrics and spans.
const Name = "products"

// Config is the service's own configuration; its command reads it from
// the environment next to service.BaseConfig.
type Config struct {
	// CacheMaxAge is how long clients and caches may reuse product reads.
	CacheMaxAge time.Duration `env:"PRODUCTS_CACHE_MAX_AGE" envDefault:"30s"`
}

// Validate reports what is wrong with c.
func (c Config) Validate() error {
	if c.CacheMaxAge < 0 {
		return errors.New("PRODUCTS_CACHE_MAX_AGE must not be negative")
	}
	return nil
}

// Deps is what the service is built from (service.Deps).
type Deps = service.Deps[Config]

// Build returns the service's HTTP server with its routes mounted.
func Build(_ context.Context, deps Deps) (*web.Server, error) {
	if deps.Pool == nil {
		return nil, errors.New("products: Deps.Pool is required")
	}
	if err := deps.Config.Validate(); err != nil {
		return nil, fmt.Errorf("products: %w", err)
	}
	openAPI, err := productsapi.OpenAPIJSON()
	if err != nil {
		return nil, err
	}
	bus := productsbus.NewBusiness(productsdb.NewStore(deps.Pool, outbox.NewWriter(deps.Web.Tracing)))
	cfg := deps.Web
	cfg.Classify = productsapi.Classify
	srv := web.New(cfg)
	srv.Mount(productsapi.Routes(productsapi.Config{
		Business:    bus,
		CacheMaxAge: deps.Config.CacheMaxAge,
		OpenAPI:     openAPI,
		Keys:        idempotency.NewStore(idempotency.Config{Pool: deps.Pool}),
	})...)
	return srv, nil
}
