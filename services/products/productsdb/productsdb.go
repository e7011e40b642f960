// Package productsdb stores products in PostgreSQL. Prices cross the
// boundary as decimal text (price::text out, $n::text::numeric in), so no
// value ever passes through a float.
package productsdb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portico-mesh/portico/services/platform/outbox"
	"github.com/portico-mesh/portico/services/platform/pgstore"
	"github.com/portico-mesh/portico/services/products/productsbus"
)

// Store implements productsbus.Storer.
type Store struct {
	pool *pgxpool.Pool
	// outbox stores the events, in the trace of the request.
	outbox *outbox.Writer
}

// NewStore returns a store over pool that writes its events with events.
func NewStore(pool *pgxpool.Pool, events *outbox.Writer) *Store {
	return &Store{pool: pool, outbox: events}
}

var _ productsbus.Storer = (*Store)(nil)

// columns is what every statement returns, in dbProduct's scan order.
const columns = `id, name, description, price::text, stock_quantity, version, created_at, updated_at`

// dbProduct is a products row.
type dbProduct struct {
	ID            int64
	Name          string
	Description   string
	Price         string // numeric(12,2) as text, e.g. "1200.00"
	StockQuantity int32
	Version       int64
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

func scanProduct(row pgx.Row) (dbProduct, error) {
	var d dbProduct
	err := row.Scan(&d.ID, &d.Name, &d.Description, &d.Price, &d.StockQuantity, &d.Version, &d.CreatedAt, &d.UpdatedAt)
	return d, err
}

func toBusProduct(d dbProduct) (productsbus.Product, error) {
	price, err := productsbus.ParsePrice(d.Price)
	if err != nil {
		return productsbus.Product{}, fmt.Errorf("product %d has price %q: %w", d.ID, d.Price, err)
	}
	return productsbus.Product{
		ID:            d.ID,
		Name:          d.Name,
		Description:   d.Description,
		Price:         price,
		StockQuantity: int(d.StockQuantity),
		Version:       d.Version,
		CreatedAt:     d.CreatedAt.UTC(),
		UpdatedAt:     d.UpdatedAt.UTC(),
	}, nil
}

// Create inserts np, its event and the request's receipt in one
// transaction.
func (s *Store) Create(ctx context.Context, np productsbus.NewProduct, event productsbus.EventFunc, receipt productsbus.Receipt) (productsbus.Product, error) {
	var p productsbus.Product
	err := pgstore.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		row := tx.QueryRow(ctx,
			`INSERT INTO products (name, description, price, stock_quantity)
			 VALUES ($1, $2, $3::text::numeric, $4)
			 RETURNING `+columns,
			np.Name, np.Description, np.Price.String(), np.StockQuantity)
		var err error
		if p, err = s.storedWithEvent(ctx, tx, row, event); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		// Last: a concurrent request with the same key waits here
		// until the first commits, then rolls this one back.
		return receipt.Keep(ctx, tx, p)
	})
	return p, err
}

// Update overwrites the row with p.ID if it still has p.Version.
func (s *Store) Update(ctx context.Context, p productsbus.Product, event productsbus.EventFunc) (productsbus.Product, error) {
	var stored productsbus.Product
	err := pgstore.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		row := tx.QueryRow(ctx,
			`UPDATE products
			    SET name = $2, description = $3, price = $4::text::numeric, stock_quantity = $5,
			        version = version + 1, updated_at = now()
			  WHERE id = $1 AND version = $6
			 RETURNING `+columns,
			p.ID, p.Name, p.Description, p.Price.String(), p.StockQuantity, p.Version)
		var err error
		stored, err = s.storedWithEvent(ctx, tx, row, event)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return productsbus.ErrVersionChanged
		case err != nil:
			return fmt.Errorf("update: %w", err)
		}
		return nil
	})
	return stored, err
}

// Delete removes the row with id and stores the event built from it.
func (s *Store) Delete(ctx context.Context, id int64, event productsbus.EventFunc) (productsbus.Product, error) {
	var deleted productsbus.Product
	err := pgstore.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		row := tx.QueryRow(ctx, `DELETE FROM products WHERE id = $1 RETURNING `+columns, id)
		var err error
		deleted, err = s.storedWithEvent(ctx, tx, row, event)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return productsbus.ErrNotFound
		case err != nil:
			return fmt.Errorf("delete: %w", err)
		}
		return nil
	})
	return deleted, err
}

// storedWithEvent scans the row a write returned and enqueues its event in
// the same transaction.
func (s *Store) storedWithEvent(ctx context.Context, tx pgx.Tx, row pgx.Row, event productsbus.EventFunc) (productsbus.Product, error) {
	d, err := scanProduct(row)
	if err != nil {
		return productsbus.Product{}, err
	}
	p, err := toBusProduct(d)
	if err != nil {
		return productsbus.Product{}, err
	}
	ev, err := event(p)
	if err != nil {
		return productsbus.Product{}, fmt.Errorf("build event: %w", err)
	}
	if err := s.outbox.Enqueue(ctx, tx, ev); err != nil {
		return productsbus.Product{}, err
	}
	return p, nil
}

// QueryByID returns the product with id.
func (s *Store) QueryByID(ctx context.Context, id int64) (productsbus.Product, error) {
	d, err := scanProduct(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM products WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return productsbus.Product{}, productsbus.ErrNotFound
	}
	if err != nil {
		return productsbus.Product{}, fmt.Errorf("select product: %w", err)
	}
	return toBusProduct(d)
}

// Query returns one keyset page of the products matching filter.
func (s *Store) Query(ctx context.Context, filter productsbus.QueryFilter, page productsbus.Page) ([]productsbus.Product, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT `+columns+` FROM products
		  WHERE id > $1
		    AND ($2::text = '' OR name ILIKE '%' || $2::text || '%' ESCAPE '\')
		  ORDER BY id
		  LIMIT $3`,
		page.AfterID, escapeLike(filter.NameContains), page.Limit)
	if err != nil {
		return nil, fmt.Errorf("select products: %w", err)
	}
	ds, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (dbProduct, error) { return scanProduct(row) })
	if err != nil {
		return nil, fmt.Errorf("select products: %w", err)
	}
	ps := make([]productsbus.Product, 0, len(ds))
	for _, d := range ds {
		p, err := toBusProduct(d)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// escapeLike makes s match itself literally inside a LIKE pattern whose
// escape character is a backslash.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}
