// Command products serves Portico's product catalog; see package
// services/products for what it runs.
package main

import (
	"github.com/portico-mesh/portico/migrations"
	"github.com/portico-mesh/portico/services/platform/service"
	"github.com/portico-mesh/portico/services/products"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// cmd is the whole command; its HTTP_ADDR default is this service's port
// in the local port plan.
func cmd() service.Command[products.Config] {
	return service.Command[products.Config]{
		Name: products.Name, Version: version, HTTPAddr: "127.0.0.1:8082",
		Migrations: migrations.Products(), Build: products.Build,
	}
}

func main() { cmd().Main() }
