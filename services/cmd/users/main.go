// Command users runs the Users service: registration, login (EdDSA JWTs),
// account management and the JWKS the ingress verifies tokens with; see
// package services/users for what it runs.
package main

import (
	"github.com/portico-mesh/portico/migrations"
	"github.com/portico-mesh/portico/services/platform/service"
	"github.com/portico-mesh/portico/services/users"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// cmd is the whole command; its HTTP_ADDR default is this service's port
// in the local port plan.
func cmd() service.Command[users.Config] {
	return service.Command[users.Config]{
		Name: users.Name, Version: version, HTTPAddr: "127.0.0.1:8081",
		Migrations: migrations.Users(), Build: users.Build,
	}
}

func main() { cmd().Main() }
