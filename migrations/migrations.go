// Package migrations embeds the goose SQL migrations of Portico's
// databases, one folder per line: each service's own schema (users,
// products; a service applies only its own folder), and the platform's
// (the outbox, the idempotency keys), which every service database
// carries beside its own and which pgstore versions apart (each its own
// version table), so that no numbering constrains another.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed users/*.sql
var users embed.FS

//go:embed products/*.sql
var products embed.FS

//go:embed outbox/*.sql
var outbox embed.FS

//go:embed idempotency/*.sql
var idempotency embed.FS

// Users returns the users service's migrations.
func Users() fs.FS { return sub(users, "users") }

// Products returns the products service's migrations.
func Products() fs.FS { return sub(products, "products") }

// Outbox returns the transactional outbox's migrations, the schema of
// services/platform/outbox (see outbox.Migrations).
func Outbox() fs.FS { return sub(outbox, "outbox") }

// Idempotency returns the idempotency keys' migrations, the schema of
// services/platform/idempotency (see idempotency.Migrations).
func Idempotency() fs.FS { return sub(idempotency, "idempotency") }

func sub(fsys embed.FS, dir string) fs.FS {
	s, err := fs.Sub(fsys, dir)
	if err != nil {
		// fs.Sub fails only for an invalid path, which is a constant here.
		panic(err)
	}
	return s
}
