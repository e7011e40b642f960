package idempotency

import (
	"github.com/portico-mesh/portico/migrations"
	"github.com/portico-mesh/portico/services/platform/pgstore"
)

// Migrations is the idempotency keys' schema, a migration line of its
// own like the outbox's (outbox.Migrations): every service database
// carries the table, defined once here, versioned apart from the
// service's own line.
func Migrations() pgstore.Line {
	return pgstore.Line{Name: "idempotency", Migrations: migrations.Idempotency()}
}
