package productsapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/portico-mesh/portico/services/platform/etag"
	"github.com/portico-mesh/portico/services/platform/jsonbody"
	"github.com/portico-mesh/portico/services/platform/page"
	"github.com/portico-mesh/portico/services/platform/problem"
	"github.com/portico-mesh/portico/services/products/productsbus"
)

// Member limits of a product.
const (
	maxNameLength        = 200
	maxDescriptionLength = 2000
	// stock_quantity is an integer column.
	maxStockQuantity = math.MaxInt32
)

// Request members. Their names are the public contract inherited from the seed.
const (
	memberName          = "name"
	memberDescription   = "description"
	memberPrice         = "price"
	memberStockQuantity = "stock_quantity"
)

// readOnlyMembers appear in responses; a client that echoes them back gets
// a clearer message than "unknown member".
var readOnlyMembers = []string{"id", "created_at", "updated_at"}

// price marshals as a JSON number with exactly the digits it holds, e.g.
// 1200.00: never through a float64, which would print 1200 or 19.990000001.
type price string

func (p price) MarshalJSON() ([]byte, error) { return []byte(p), nil }

// productResponse is a product as clients see it.
type productResponse struct {
	ID            int64     `json:"id"`
	Name          string    `json:"name"`
	Description   string    `json:"description"`
	Price         price     `json:"price"`
	StockQuantity int       `json:"stock_quantity"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// pageResponse is one page of a list.
type pageResponse struct {
	Items      []productResponse `json:"items"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

func toAppProduct(p productsbus.Product) productResponse {
	return productResponse{
		ID:            p.ID,
		Name:          p.Name,
		Description:   p.Description,
		Price:         price(p.Price.String()),
		StockQuantity: p.StockQuantity,
		CreatedAt:     p.CreatedAt.UTC(),
		UpdatedAt:     p.UpdatedAt.UTC(),
	}
}

func toAppProducts(ps []productsbus.Product) []productResponse {
	out := make([]productResponse, 0, len(ps))
	for _, p := range ps {
		out = append(out, toAppProduct(p))
	}
	return out
}

// productInput collects the validated members of a create or update body.
type productInput struct {
	name          *string
	description   *string
	price         *productsbus.Price
	stockQuantity *int
}

// validate checks every member of a create or update body and reports all
// offending ones together. required lists members that must be present.
func validate(m jsonbody.Members, required ...string) (productInput, error) {
	var in productInput
	errs := m.Missing(required...)
	for member, raw := range m {
		var err error
		switch member {
		case memberName:
			in.name, err = nameMember(raw)
		case memberDescription:
			in.description, err = descriptionMember(raw)
		case memberPrice:
			in.price, err = priceMember(raw)
		case memberStockQuantity:
			in.stockQuantity, err = stockQuantityMember(raw)
		default:
			if slices.Contains(readOnlyMembers, member) {
				err = errors.New("is read-only")
			} else {
				err = errors.New("is not a member of a product")
			}
		}
		if err != nil {
			errs = append(errs, jsonbody.MemberError(member, err.Error()))
		}
	}
	if err := jsonbody.Validation(errs); err != nil {
		return productInput{}, err
	}
	return in, nil
}

func (in productInput) toBusNewProduct() productsbus.NewProduct {
	np := productsbus.NewProduct{Name: *in.name, Price: *in.price}
	if in.description != nil {
		np.Description = *in.description
	}
	if in.stockQuantity != nil {
		np.StockQuantity = *in.stockQuantity
	}
	return np
}

func (in productInput) toBusUpdateProduct() productsbus.UpdateProduct {
	return productsbus.UpdateProduct{
		Name:          in.name,
		Description:   in.description,
		Price:         in.price,
		StockQuantity: in.stockQuantity,
	}
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

func stringMember(raw json.RawMessage) (string, error) {
	var s string
	if isNull(raw) || json.Unmarshal(raw, &s) != nil {
		return "", errors.New("must be a string")
	}
	// PostgreSQL text cannot hold NUL.
	if strings.ContainsRune(s, 0) {
		return "", errors.New("must not contain NUL characters")
	}
	return s, nil
}

func nameMember(raw json.RawMessage) (*string, error) {
	s, err := stringMember(raw)
	if err != nil {
		return nil, err
	}
	// The length limit applies to the name as sent, as the document's
	// maxLength does; the surrounding white space is then dropped.
	if utf8.RuneCountInString(s) > maxNameLength {
		return nil, fmt.Errorf("must be at most %d characters", maxNameLength)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("must not be blank")
	}
	return &s, nil
}

func descriptionMember(raw json.RawMessage) (*string, error) {
	s, err := stringMember(raw)
	if err != nil {
		return nil, err
	}
	if utf8.RuneCountInString(s) > maxDescriptionLength {
		return nil, fmt.Errorf("must be at most %d characters", maxDescriptionLength)
	}
	return &s, nil
}

// priceString is the one form of a price given as a string, as the
// document's PriceInput pattern says: digits, and at most two decimals.
// Exponents, signs and further (even zero) decimals are JSON numbers'
// alone, so the document can describe exactly what is accepted.
var priceString = regexp.MustCompile(`^[0-9]{1,10}(\.[0-9]{1,2})?$`)

// priceMember accepts a JSON number (19.99) or a string holding one
// ("19.99"). A number is read from its literal text, never as a float.
func priceMember(raw json.RawMessage) (*productsbus.Price, error) {
	text := string(raw)
	if strings.HasPrefix(text, `"`) {
		if err := json.Unmarshal(raw, &text); err != nil || !priceString.MatchString(text) {
			return nil, productsbus.ErrPriceSyntax
		}
	}
	p, err := productsbus.ParsePrice(text)
	if err != nil {
		return nil, err
	}
	return &p, nil
}

func stockQuantityMember(raw json.RawMessage) (*int, error) {
	text := string(raw)
	digits := strings.TrimPrefix(text, "-")
	if digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
		return nil, errors.New("must be an integer")
	}
	if text != digits && strings.Trim(digits, "0") != "" {
		return nil, errors.New("must not be negative")
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > maxStockQuantity {
		return nil, fmt.Errorf("must be at most %d", maxStockQuantity)
	}
	q := int(n)
	return &q, nil
}

// toBusPrecondition is If-Match as the business layer reads it.
func toBusPrecondition(m etag.IfMatch) productsbus.Precondition {
	return productsbus.Precondition{Present: m.Present, Any: m.Any, Versions: m.Versions}
}

// Query parameters of the list route besides page's.
const paramName = "name"

// listQuery is the validated query of the list route.
type listQuery struct {
	filter productsbus.QueryFilter
	page   page.Request
}

func parseListQuery(c *fiber.Ctx) (listQuery, error) {
	p, errs := page.Parse(c)
	q := listQuery{filter: productsbus.QueryFilter{NameContains: c.Query(paramName)}, page: p}
	switch name := q.filter.NameContains; {
	case !utf8.ValidString(name) || strings.ContainsRune(name, 0):
		errs = append(errs, problem.Field(paramName, "must be UTF-8 text without NUL characters"))
	case utf8.RuneCountInString(name) > maxNameLength:
		errs = append(errs, problem.Field(paramName, fmt.Sprintf("must be at most %d characters", maxNameLength)))
	}
	if err := jsonbody.Validation(errs); err != nil {
		return listQuery{}, err
	}
	return q, nil
}
