package productsapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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

// productMembers is a decoded request body: each member present, as raw JSON.
type productMembers map[string]json.RawMessage

// decodeMembers reads a JSON object without interpreting its members, so
// that every offending member can be reported at once.
func decodeMembers(body []byte) (productMembers, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, problem.Malformed("the request body is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var members productMembers
	if err := dec.Decode(&members); err != nil {
		return nil, problem.Malformed("the request body is not a valid JSON object: " + jsonErrorDetail(err))
	}
	if members == nil {
		return nil, problem.Malformed("the request body must be a JSON object, not null")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, problem.Malformed("the request body has data after the JSON object")
	}
	return members, nil
}

// jsonErrorDetail describes a decoding error without echoing Go types.
func jsonErrorDetail(err error) string {
	var syntax *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("%s (at byte %d)", syntax.Error(), syntax.Offset)
	case errors.As(err, &typeErr):
		return "expected an object, got " + typeErr.Value
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of input"
	default:
		return "malformed JSON"
	}
}

// productInput collects the validated members of a create or update body.
type productInput struct {
	name          *string
	description   *string
	price         *productsbus.Price
	stockQuantity *int
}

// validate checks every member and reports all offending ones together.
// required lists members that must be present.
func (m productMembers) validate(required ...string) (productInput, error) {
	var (
		in   productInput
		errs []problem.FieldError
	)
	fail := func(member, detail string) { errs = append(errs, problem.Field(member, detail)) }
	for _, member := range required {
		if _, ok := m[member]; !ok {
			fail(member, "is required")
		}
	}
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
			fail(member, err.Error())
		}
	}
	if len(errs) > 0 {
		// Map order is random; clients and tests deserve a stable list.
		slices.SortFunc(errs, func(a, b problem.FieldError) int { return strings.Compare(a.Field, b.Field) })
		return productInput{}, problem.Validation(errs...)
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
	s = strings.TrimSpace(s)
	switch n := utf8.RuneCountInString(s); {
	case n == 0:
		return nil, errors.New("must not be blank")
	case n > maxNameLength:
		return nil, fmt.Errorf("must be at most %d characters", maxNameLength)
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

// priceMember accepts a JSON number (19.99) or a string holding one
// ("19.99"). A number is read from its literal text, never as a float.
func priceMember(raw json.RawMessage) (*productsbus.Price, error) {
	text := string(raw)
	if strings.HasPrefix(text, `"`) {
		if err := json.Unmarshal(raw, &text); err != nil {
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
