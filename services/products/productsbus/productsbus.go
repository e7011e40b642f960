// Package productsbus is the business layer of the products service: the
// product model, who may change it, how concurrent changes are reconciled,
// and the events each change publishes.
package productsbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/portico-mesh/portico/services/platform/events"
	"github.com/portico-mesh/portico/services/platform/idempotency"
	"github.com/portico-mesh/portico/services/platform/identity"
)

// Errors the API classifies.
var (
	ErrNotFound        = errors.New("product not found")
	ErrUnauthenticated = errors.New("a signed-in caller is required")
	ErrForbidden       = errors.New("the admin role is required")
	// ErrPreconditionFailed: the caller's If-Match names a version that is
	// no longer current.
	ErrPreconditionFailed = errors.New("the product has changed since the version the request names")
	// ErrConflict: concurrent writers kept changing the product while an
	// unconditional update was retried.
	ErrConflict = errors.New("the product was changed concurrently; retry the request")
)

// ErrVersionChanged is returned by a Storer when the row no longer has the
// version the write was based on (or is gone). The business layer retries
// or reports it; it never reaches a client as such.
var ErrVersionChanged = errors.New("product version changed")

// Product is a product of the catalog.
type Product struct {
	ID            int64
	Name          string
	Description   string
	Price         Price
	StockQuantity int
	// Version starts at 1 and grows by one with every update; ETags are
	// derived from it.
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// NewProduct is what a create needs; the API has validated it.
type NewProduct struct {
	Name          string
	Description   string
	Price         Price
	StockQuantity int
}

// UpdateProduct is a partial update: nil members are left as they are.
type UpdateProduct struct {
	Name          *string
	Description   *string
	Price         *Price
	StockQuantity *int
}

// Empty reports whether the update changes nothing.
func (u UpdateProduct) Empty() bool {
	return u.Name == nil && u.Description == nil && u.Price == nil && u.StockQuantity == nil
}

func (u UpdateProduct) applyTo(p Product) Product {
	if u.Name != nil {
		p.Name = *u.Name
	}
	if u.Description != nil {
		p.Description = *u.Description
	}
	if u.Price != nil {
		p.Price = *u.Price
	}
	if u.StockQuantity != nil {
		p.StockQuantity = *u.StockQuantity
	}
	return p
}

// Precondition is a request's If-Match condition. The zero value means the
// request had none.
type Precondition struct {
	Present bool
	// Any is If-Match: *, which any existing product satisfies.
	Any bool
	// Versions are the versions named by the strong entity tags. Tags that
	// name no version (weak or foreign ones) match nothing.
	Versions []int64
}

func (pc Precondition) matches(version int64) bool {
	if !pc.Present || pc.Any {
		return true
	}
	for _, v := range pc.Versions {
		if v == version {
			return true
		}
	}
	return false
}

// pinned reports whether the precondition names specific versions, in
// which case a concurrent change makes it fail instead of being retried.
func (pc Precondition) pinned() bool { return pc.Present && !pc.Any }

// Page selects a window of a keyset-paginated list ordered by id.
type Page struct {
	// AfterID excludes ids up to and including it; 0 starts at the beginning.
	AfterID int64
	Limit   int
}

// QueryFilter narrows a list.
type QueryFilter struct {
	// NameContains matches names containing it, ignoring case; "" matches all.
	NameContains string
}

// EventFunc builds the event of a write from the row as stored, so that the
// store can save both in one transaction.
type EventFunc func(Product) (events.Envelope, error)

// Receipt keeps the response to a create under the request's
// Idempotency-Key, in the create's transaction, so that a retried create
// is answered, not done again (idempotency.Record). The zero Receipt (a
// request without a key) keeps nothing.
type Receipt = idempotency.Record[Product]

// Storer is the persistence the business layer needs. Each write stores the
// change and the event built by the EventFunc atomically.
type Storer interface {
	// Create stores np, its event and its receipt in one transaction.
	Create(ctx context.Context, np NewProduct, event EventFunc, receipt Receipt) (Product, error)
	// Update writes p over the row with p.ID only if that row still has
	// p.Version, incrementing the version; ErrVersionChanged otherwise.
	Update(ctx context.Context, p Product, event EventFunc) (Product, error)
	// Delete removes the row with id and returns it as it was.
	Delete(ctx context.Context, id int64, event EventFunc) (Product, error)
	QueryByID(ctx context.Context, id int64) (Product, error)
	// Query returns up to page.Limit products with id > page.AfterID in id order.
	Query(ctx context.Context, filter QueryFilter, page Page) ([]Product, error)
}

// updateAttempts bounds how often an update without a pinned version is
// re-read and retried when a concurrent writer got there first.
const updateAttempts = 3

// Business is the products use cases.
type Business struct {
	storer Storer
	now    func() time.Time
}

// NewBusiness returns the use cases over storer.
func NewBusiness(storer Storer) *Business {
	return &Business{storer: storer, now: time.Now}
}

// AuthorizeWrite reports whether caller may create or update products:
// any signed-in caller may. Handlers call it before reading the body, so an
// anonymous caller learns nothing about validation.
func AuthorizeWrite(caller identity.Identity) error {
	if caller.Anonymous() {
		return ErrUnauthenticated
	}
	return nil
}

// AuthorizeDelete reports whether caller may delete products: admins only.
func AuthorizeDelete(caller identity.Identity) error {
	if caller.Anonymous() {
		return ErrUnauthenticated
	}
	if !caller.IsAdmin() {
		return ErrForbidden
	}
	return nil
}

// Create stores a new product, its product.created event and the
// receipt of the request.
func (b *Business) Create(ctx context.Context, caller identity.Identity, np NewProduct, receipt Receipt) (Product, error) {
	if err := AuthorizeWrite(caller); err != nil {
		return Product{}, err
	}
	p, err := b.storer.Create(ctx, np, b.changedEvent(EventCreated), receipt)
	if err != nil {
		return Product{}, fmt.Errorf("create product: %w", err)
	}
	return p, nil
}

// Update applies up to the product with id.
//
// Lost updates are impossible: every write is conditional on the version it
// was computed from. With an If-Match naming versions, a mismatch, before
// or during the write, is ErrPreconditionFailed. Without one (or with
// If-Match: *), a concurrent change makes the update re-read and re-apply,
// a few times, before giving up with ErrConflict.
//
// An empty update writes nothing and returns the current product.
func (b *Business) Update(ctx context.Context, caller identity.Identity, id int64, up UpdateProduct, pc Precondition) (Product, error) {
	if err := AuthorizeWrite(caller); err != nil {
		return Product{}, err
	}
	for range updateAttempts {
		current, err := b.storer.QueryByID(ctx, id)
		if err != nil {
			return Product{}, fmt.Errorf("update product %d: %w", id, err)
		}
		if !pc.matches(current.Version) {
			return Product{}, ErrPreconditionFailed
		}
		if up.Empty() {
			return current, nil
		}
		stored, err := b.storer.Update(ctx, up.applyTo(current), b.changedEvent(EventUpdated))
		switch {
		case err == nil:
			return stored, nil
		case !errors.Is(err, ErrVersionChanged):
			return Product{}, fmt.Errorf("update product %d: %w", id, err)
		case pc.pinned():
			// The version the caller named was current a moment ago and
			// is not any more.
			return Product{}, ErrPreconditionFailed
		}
	}
	return Product{}, ErrConflict
}

// Delete removes the product with id and stores its product.deleted event.
func (b *Business) Delete(ctx context.Context, caller identity.Identity, id int64) error {
	if err := AuthorizeDelete(caller); err != nil {
		return err
	}
	_, err := b.storer.Delete(ctx, id, func(p Product) (events.Envelope, error) {
		return events.New(EventDeleted, EventSource, subject(p.ID), DeletedEventData{ID: p.ID, Version: p.Version}, b.now())
	})
	if err != nil {
		return fmt.Errorf("delete product %d: %w", id, err)
	}
	return nil
}

// QueryByID returns the product with id.
func (b *Business) QueryByID(ctx context.Context, id int64) (Product, error) {
	p, err := b.storer.QueryByID(ctx, id)
	if err != nil {
		return Product{}, fmt.Errorf("query product %d: %w", id, err)
	}
	return p, nil
}

// Query returns a page of products matching filter.
func (b *Business) Query(ctx context.Context, filter QueryFilter, page Page) ([]Product, error) {
	ps, err := b.storer.Query(ctx, filter, page)
	if err != nil {
		return nil, fmt.Errorf("query products: %w", err)
	}
	return ps, nil
}
