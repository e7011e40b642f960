// Package page is keyset pagination as every Portico service exposes it:
// the limit and cursor query parameters, the opaque cursor, and the
// Link header that names the next page.
//
// A cursor is the base64url (unpadded) text of the last id of a page. Only
// the form this package writes is accepted back: "MDE" ("01") or a cursor
// with stray padding bits names the same id but was never issued, so it is
// refused rather than silently honoured.
//
// The next page is linked with a query-only relative reference
// (<?cursor=...&limit=...>; RFC 3986 section 5.2): it resolves against the
// URL the client sent, so it is right behind any path prefix the ingress
// strips, without the service having to know or trust that prefix.
package page

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/portico-mesh/portico/services/platform/problem"
)

// Bounds of a page.
const (
	DefaultLimit = 20
	MaxLimit     = 100
)

// Query parameters.
const (
	ParamLimit  = "limit"
	ParamCursor = "cursor"
)

// Request is a validated page request: the ids after AfterID (0: from the
// start), at most Limit of them.
type Request struct {
	AfterID int64
	Limit   int
}

// CursorPattern is the regular expression (ECMA 262 and RE2 alike) of
// every cursor EncodeCursor writes for an id below 10^18, and of nothing
// else: base64url of a decimal without leading zeros, spelled out three
// digits (four characters) at a time. The services' OpenAPI documents
// give it as the cursor parameter's pattern, so that a client or a
// generator that follows the document sends only cursors DecodeCursor
// accepts. (Ids of 19 digits, which a bigserial does not reach, are
// accepted but left out to keep the expression finite.)
const CursorPattern = `^(?:(?:M[Tjz]|N[DTjz]|O[DT])[AEIMQUYcgk][w-z0-5](?:(?:[MN][DTjz]|O[DT])[AEIMQUYcgk][w-z0-5]){0,4}(?:(?:[MN][DTjz]|O[DT])[AEIMQUYcgk]|[MN][AQgw]|O[AQ])?|(?:M[Tjz]|N[DTjz]|O[DT])[AEIMQUYcgk][w-z0-5](?:(?:[MN][DTjz]|O[DT])[AEIMQUYcgk][w-z0-5]){5}|(?:M[Tjz]|N[DTjz]|O[DT])[AEIMQUYcgk]|M[Qgw]|N[AQgw]|O[AQ])$`

// EncodeCursor is the cursor that resumes a list after lastID.
func EncodeCursor(lastID int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(lastID, 10)))
}

// DecodeCursor returns the id a cursor resumes after, if EncodeCursor
// could have written it.
func DecodeCursor(cursor string) (int64, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return 0, false
	}
	id, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || id <= 0 || EncodeCursor(id) != cursor {
		return 0, false
	}
	return id, true
}

// Parse reads the limit and cursor parameters of c. It returns field
// errors rather than a problem, so that a handler reports them together
// with errors in its own parameters. A parameter given empty (?cursor=)
// is refused like any other value that is not one: only an absent
// parameter takes the default.
func Parse(c *fiber.Ctx) (Request, []problem.FieldError) {
	return parse(queryParam(c, ParamLimit), queryParam(c, ParamCursor))
}

// queryParam is the value of the query parameter name, or nil when the
// query does not have it.
func queryParam(c *fiber.Ctx, name string) *string {
	args := c.Context().QueryArgs()
	if !args.Has(name) {
		return nil
	}
	v := string(args.Peek(name))
	return &v
}

func parse(limit, cursor *string) (Request, []problem.FieldError) {
	r := Request{Limit: DefaultLimit}
	var errs []problem.FieldError
	if limit != nil {
		n, err := strconv.Atoi(*limit)
		if err != nil || n < 1 || n > MaxLimit {
			errs = append(errs, problem.Field(ParamLimit, fmt.Sprintf("must be an integer from 1 to %d", MaxLimit)))
		}
		r.Limit = n
	}
	if cursor != nil {
		id, ok := DecodeCursor(*cursor)
		if !ok {
			errs = append(errs, problem.Field(ParamCursor, "is not a cursor this service issued"))
		}
		r.AfterID = id
	}
	return r, errs
}

// Next is the next page after a page of r whose last id is lastID: its
// cursor (for the body's next_cursor) and its query (for the Link header),
// to which a handler adds its own filters.
func Next(r Request, lastID int64) (cursor string, query url.Values) {
	cursor = EncodeCursor(lastID)
	return cursor, url.Values{ParamLimit: {strconv.Itoa(r.Limit)}, ParamCursor: {cursor}}
}

// NextLink is the Link header value of the page query names.
func NextLink(query url.Values) string {
	return fmt.Sprintf(`<?%s>; rel="next"`, query.Encode())
}

// SetNextLink sets the Link header of c to the page query names.
func SetNextLink(c *fiber.Ctx, query url.Values) {
	c.Set(fiber.HeaderLink, NextLink(query))
}
