// Package migrations embeds each service's goose SQL migrations. Each
// service owns its database and applies only its own folder.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed users/*.sql
var users embed.FS

//go:embed products/*.sql
var products embed.FS

// Users returns the users service's migrations.
func Users() fs.FS { return sub(users, "users") }

// Products returns the products service's migrations.
func Products() fs.FS { return sub(products, "products") }

func sub(fsys embed.FS, dir string) fs.FS {
	s, err := fs.Sub(fsys, dir)
	if err != nil {
		// fs.Sub fails only for an invalid path, which is a constant here.
		panic(err)
	}
	return s
}
