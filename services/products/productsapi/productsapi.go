// Package productsapi is the HTTP surface of the products service: routes,
// request validation, conditional requests, caching headers and the
// OpenAPI document that describes all of it.
package productsapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/portico-mesh/portico/services/platform/contract"
	"github.com/portico-mesh/portico/services/platform/etag"
	"github.com/portico-mesh/portico/services/platform/idempotency"
	"github.com/portico-mesh/portico/services/platform/identity"
	"github.com/portico-mesh/portico/services/platform/jsonbody"
	"github.com/portico-mesh/portico/services/platform/page"
	"github.com/portico-mesh/portico/services/platform/pgstore"
	"github.com/portico-mesh/portico/services/platform/problem"
	"github.com/portico-mesh/portico/services/platform/web"
	"github.com/portico-mesh/portico/services/products/productsbus"
)

// Config is what the routes need.
type Config struct {
	Business *productsbus.Business
	// CacheMaxAge is how long clients and shared caches may reuse a
	// successful product read (Cache-Control max-age, whole seconds).
	CacheMaxAge time.Duration
	// OpenAPI is the JSON document served at /openapi.json; see OpenAPIJSON.
	OpenAPI []byte
	// Keys keeps the responses of creates sent with an Idempotency-Key.
	Keys *idempotency.Store
}

// dbTimeout bounds the database work of one request.
const dbTimeout = 5 * time.Second

// Successful reads are tagged for the edge cache (contract.ProductTags),
// which purges by tag when it consumes this service's events and strips
// the header before responses reach clients.

// Cache-Control of everything that is not a successful read: write
// responses describe a change, errors must not stick in a cache.
const cacheNoStore = "no-store"

// Routes returns the products routes.
func Routes(cfg Config) []web.Route {
	h := handlers{
		bus:              cfg.Business,
		readCacheControl: "public, max-age=" + strconv.Itoa(int(max(cfg.CacheMaxAge, 0)/time.Second)),
		openAPI:          cfg.OpenAPI,
		keys:             cfg.Keys,
	}
	return []web.Route{
		{Method: http.MethodGet, Path: "/products", Handler: noStoreUnlessRead(h.list)},
		{Method: http.MethodPost, Path: "/products", Handler: noStoreUnlessRead(h.create)},
		{Method: http.MethodGet, Path: "/products/:id", Handler: noStoreUnlessRead(h.get)},
		{Method: http.MethodPut, Path: "/products/:id", Handler: noStoreUnlessRead(h.update)},
		{Method: http.MethodDelete, Path: "/products/:id", Handler: noStoreUnlessRead(h.delete)},
		{Method: http.MethodGet, Path: "/openapi.json", Handler: h.openAPIDocument},
	}
}

// noStoreUnlessRead marks every response no-store before the handler runs;
// successful reads replace it with their own Cache-Control. Errors are
// rendered after the handler returns and keep no-store.
func noStoreUnlessRead(next fiber.Handler) fiber.Handler {
	return func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderCacheControl, cacheNoStore)
		return next(c)
	}
}

// Classify maps the business errors of the products service to problems;
// it is the service's web.Config.Classify.
func Classify(err error) *problem.Problem {
	switch {
	case errors.Is(err, productsbus.ErrNotFound):
		return problem.NotFound("no product has this id")
	case errors.Is(err, productsbus.ErrUnauthenticated):
		return problem.Unauthenticated("sign in to change products")
	case errors.Is(err, productsbus.ErrForbidden):
		return problem.Forbidden("only admins may delete products")
	case errors.Is(err, productsbus.ErrPreconditionFailed):
		return problem.PreconditionFailed("If-Match does not name the current version of the product; fetch it again")
	case errors.Is(err, productsbus.ErrConflict):
		return problem.Conflict("the product was changed concurrently; fetch it and retry")
	case errors.Is(err, context.DeadlineExceeded):
		return problem.New(problem.TypeUnavailable, http.StatusServiceUnavailable, "the product store did not answer in time")
	case pgstore.Unavailable(err):
		return problem.New(problem.TypeUnavailable, http.StatusServiceUnavailable, "the product store is unavailable; retry later")
	}
	return nil
}

type handlers struct {
	bus              *productsbus.Business
	readCacheControl string
	openAPI          []byte
	keys             *idempotency.Store
}

// create stores a product once per Idempotency-Key: a retry of a create
// that committed is answered its first response (idempotency.Serve).
func (h handlers) create(c *fiber.Ctx) error {
	caller := identity.FromFiber(c)
	if err := productsbus.AuthorizeWrite(caller); err != nil {
		return err
	}
	respond := func(p productsbus.Product) (idempotency.Response, error) { return createdResponse(c, p) }
	return idempotency.Serve(c, h.keys, caller.UserID, respond, func(receipt productsbus.Receipt) (productsbus.Product, error) {
		members, err := jsonbody.Decode(c)
		if err != nil {
			return productsbus.Product{}, err
		}
		in, err := validate(members, memberName, memberPrice)
		if err != nil {
			return productsbus.Product{}, err
		}
		ctx, cancel := context.WithTimeout(c.UserContext(), dbTimeout)
		defer cancel()
		return h.bus.Create(ctx, caller, in.toBusNewProduct(), receipt)
	})
}

// createdResponse is the 201 of a create, as sent and as kept for
// replays.
func createdResponse(c *fiber.Ctx, p productsbus.Product) (idempotency.Response, error) {
	body, err := json.Marshal(toAppProduct(p))
	if err != nil {
		return idempotency.Response{}, err
	}
	return idempotency.Response{
		Status: http.StatusCreated,
		Header: map[string]string{
			fiber.HeaderLocation:    web.ChildReference(c.Path(), strconv.FormatInt(p.ID, 10)),
			fiber.HeaderETag:        etag.Format(p.Version),
			fiber.HeaderContentType: fiber.MIMEApplicationJSON,
		},
		Body: body,
	}, nil
}

func (h handlers) get(c *fiber.Ctx) error {
	id, err := productID(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), dbTimeout)
	defer cancel()
	p, err := h.bus.QueryByID(ctx, id)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderETag, etag.Format(p.Version))
	c.Set(fiber.HeaderCacheControl, h.readCacheControl)
	c.Set(contract.HeaderSurrogateKey, contract.ProductTags.ItemTag(p.ID))
	if etag.NoneMatch(c.Get(fiber.HeaderIfNoneMatch), p.Version) {
		return c.SendStatus(http.StatusNotModified)
	}
	return c.JSON(toAppProduct(p))
}

func (h handlers) list(c *fiber.Ctx) error {
	q, err := parseListQuery(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), dbTimeout)
	defer cancel()
	// One extra row tells whether a next page exists.
	ps, err := h.bus.Query(ctx, q.filter, productsbus.Page{AfterID: q.page.AfterID, Limit: q.page.Limit + 1})
	if err != nil {
		return err
	}
	resp := pageResponse{}
	if len(ps) > q.page.Limit {
		ps = ps[:q.page.Limit]
		cursor, next := page.Next(q.page, ps[len(ps)-1].ID)
		if q.filter.NameContains != "" {
			next.Set(paramName, q.filter.NameContains)
		}
		resp.NextCursor = cursor
		page.SetNextLink(c, next)
	}
	resp.Items = toAppProducts(ps)
	c.Set(fiber.HeaderCacheControl, h.readCacheControl)
	c.Set(contract.HeaderSurrogateKey, contract.ProductTags.List)
	return c.JSON(resp)
}

func (h handlers) update(c *fiber.Ctx) error {
	caller := identity.FromFiber(c)
	if err := productsbus.AuthorizeWrite(caller); err != nil {
		return err
	}
	id, err := productID(c)
	if err != nil {
		return err
	}
	members, err := jsonbody.Decode(c)
	if err != nil {
		return err
	}
	in, err := validate(members)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), dbTimeout)
	defer cancel()
	p, err := h.bus.Update(ctx, caller, id, in.toBusUpdateProduct(), toBusPrecondition(etag.ParseIfMatch(c.Get(fiber.HeaderIfMatch))))
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderETag, etag.Format(p.Version))
	return c.JSON(toAppProduct(p))
}

func (h handlers) delete(c *fiber.Ctx) error {
	caller := identity.FromFiber(c)
	if err := productsbus.AuthorizeDelete(caller); err != nil {
		return err
	}
	id, err := productID(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), dbTimeout)
	defer cancel()
	if err := h.bus.Delete(ctx, caller, id); err != nil {
		return err
	}
	return c.SendStatus(http.StatusNoContent)
}

func (h handlers) openAPIDocument(c *fiber.Ctx) error {
	c.Set(fiber.HeaderCacheControl, h.readCacheControl)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(h.openAPI)
}

// productID reads the :id path parameter. An id that cannot exist is
// simply not found.
func productID(c *fiber.Ctx) (int64, error) {
	id, err := strconv.ParseInt(c.Params("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, productsbus.ErrNotFound
	}
	return id, nil
}
