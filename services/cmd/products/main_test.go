package main

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portico-mesh/portico/services/platform/service"
	"github.com/portico-mesh/portico/services/products"
)

// consulDefaults is the mesh registration configuration without any
// variable set (no CONSUL_HTTP_ADDR: nothing is registered).
func consulDefaults() service.ConsulConfig {
	return service.ConsulConfig{CheckInterval: 2 * time.Second, DeregisterAfter: time.Minute, DrainDelay: time.Second}
}

// config is the command's whole configuration.
type config = service.Config[products.Config]

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		want    config
		wantErr bool
	}{
		{
			name:    "defaults",
			environ: []string{"DATABASE_URL=postgres://db/products"},
			want: config{
				BaseConfig: service.BaseConfig{
					HTTPAddr:        "127.0.0.1:8082",
					DatabaseURL:     "postgres://db/products",
					AMQPURL:         "amqp://guest:guest@127.0.0.1:5672/",
					AMQPExchange:    "portico.events",
					LogLevel:        "info",
					ShutdownTimeout: 20 * time.Second,
					Consul:          consulDefaults(),
				},
				Own: products.Config{CacheMaxAge: 30 * time.Second},
			},
		},
		{
			name:    "overrides",
			environ: []string{"DATABASE_URL=postgres://db/p", "HTTP_ADDR=0.0.0.0:9000", "PRODUCTS_CACHE_MAX_AGE=2m"},
			want: config{
				BaseConfig: service.BaseConfig{
					HTTPAddr:        "0.0.0.0:9000",
					DatabaseURL:     "postgres://db/p",
					AMQPURL:         "amqp://guest:guest@127.0.0.1:5672/",
					AMQPExchange:    "portico.events",
					LogLevel:        "info",
					ShutdownTimeout: 20 * time.Second,
					Consul:          consulDefaults(),
				},
				Own: products.Config{CacheMaxAge: 2 * time.Minute},
			},
		},
		{name: "zero max age disables reuse", environ: []string{"DATABASE_URL=x", "PRODUCTS_CACHE_MAX_AGE=0s"}, want: config{
			BaseConfig: service.BaseConfig{
				HTTPAddr: "127.0.0.1:8082", DatabaseURL: "x", AMQPURL: "amqp://guest:guest@127.0.0.1:5672/",
				AMQPExchange: "portico.events", LogLevel: "info", ShutdownTimeout: 20 * time.Second,
				Consul: consulDefaults(),
			},
		}},
		{name: "database required", environ: nil, wantErr: true},
		{name: "negative max age", environ: []string{"DATABASE_URL=x", "PRODUCTS_CACHE_MAX_AGE=-1s"}, wantErr: true},
		{name: "max age not a duration", environ: []string{"DATABASE_URL=x", "PRODUCTS_CACHE_MAX_AGE=soon"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cmd().Spec().Load(tc.environ)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}
