package outbox

import (
	"github.com/portico-mesh/portico/migrations"
	"github.com/portico-mesh/portico/services/platform/pgstore"
)

// Migrations is the outbox's schema: the table Enqueue writes and the
// Relay reads, with the trigger that wakes the relay. It is a migration
// line of its own, versioned apart from the schema of the service whose
// database carries it, so the table is defined once for every service.
// Apply it before the service's own line (pgstore.Migrate).
func Migrations() pgstore.Line {
	return pgstore.Line{Name: "outbox", Migrations: migrations.Outbox()}
}
