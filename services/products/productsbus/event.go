package productsbus

import (
	"strconv"
	"time"

	"github.com/portico-mesh/portico/services/platform/events"
)

// Event types, the routing keys on the events exchange.
const (
	EventCreated = "product.created"
	EventUpdated = "product.updated"
	EventDeleted = "product.deleted"
)

// EventSource is the CloudEvents source of every products event.
const EventSource = "portico/products"

// ProductEventData is the data of product.created and product.updated: the
// product as stored by the write. It is a published schema: members are
// only ever added.
type ProductEventData struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	// Price is exact decimal text with two decimal places, e.g. "19.99".
	Price         string    `json:"price"`
	StockQuantity int       `json:"stock_quantity"`
	Version       int64     `json:"version"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// DeletedEventData is the data of product.deleted: which product, and the
// version it had when deleted.
type DeletedEventData struct {
	ID      int64 `json:"id"`
	Version int64 `json:"version"`
}

func subject(id int64) string { return "products/" + strconv.FormatInt(id, 10) }

func (b *Business) changedEvent(typ string) EventFunc {
	return func(p Product) (events.Envelope, error) {
		data := ProductEventData{
			ID:            p.ID,
			Name:          p.Name,
			Description:   p.Description,
			Price:         p.Price.String(),
			StockQuantity: p.StockQuantity,
			Version:       p.Version,
			UpdatedAt:     p.UpdatedAt.UTC(),
		}
		return events.New(typ, EventSource, subject(p.ID), data, b.now())
	}
}
