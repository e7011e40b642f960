package productsapi

import (
	"encoding/base64"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/portico-mesh/portico/services/platform/problem"
	"github.com/portico-mesh/portico/services/products/productsbus"
)

// etag is the strong entity tag of a product version, e.g. "3" with quotes.
func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// entityTag is one member of an If-Match or If-None-Match list.
type entityTag struct {
	weak   bool
	opaque string // without quotes
}

// version returns the product version a tag names, if it names one.
func (t entityTag) version() (int64, bool) {
	v, err := strconv.ParseInt(t.opaque, 10, 64)
	return v, err == nil && v > 0
}

// parseETags reads a list of entity tags (RFC 9110 section 8.8.3) or "*".
// Garbage between tags is skipped: a tag we cannot read matches nothing.
func parseETags(header string) (tags []entityTag, wildcard bool) {
	s := strings.TrimSpace(header)
	if s == "*" {
		return nil, true
	}
	for s != "" {
		s = strings.TrimLeft(s, " \t,")
		var t entityTag
		if strings.HasPrefix(s, "W/") {
			t.weak, s = true, s[2:]
		}
		if !strings.HasPrefix(s, `"`) {
			// Not a tag: skip to the next list member.
			if i := strings.IndexByte(s, ','); i >= 0 {
				s = s[i+1:]
				continue
			}
			break
		}
		end := strings.IndexByte(s[1:], '"')
		if end < 0 {
			break
		}
		t.opaque, s = s[1:end+1], s[end+2:]
		tags = append(tags, t)
	}
	return tags, false
}

// toBusPrecondition reads If-Match. Comparison is strong (RFC 9110 section
// 13.1.1): a weak tag never matches.
func toBusPrecondition(header string) productsbus.Precondition {
	if strings.TrimSpace(header) == "" {
		return productsbus.Precondition{}
	}
	tags, wildcard := parseETags(header)
	pc := productsbus.Precondition{Present: true, Any: wildcard}
	for _, t := range tags {
		if v, ok := t.version(); ok && !t.weak {
			pc.Versions = append(pc.Versions, v)
		}
	}
	return pc
}

// noneMatch reports whether If-None-Match is satisfied by version, i.e.
// the client's copy is current. Comparison is weak (RFC 9110 section 13.1.2).
func noneMatch(header string, version int64) bool {
	if strings.TrimSpace(header) == "" {
		return false
	}
	tags, wildcard := parseETags(header)
	if wildcard {
		return true
	}
	for _, t := range tags {
		if v, ok := t.version(); ok && v == version {
			return true
		}
	}
	return false
}

// requireJSON refuses a body that is not declared as JSON.
func requireJSON(c *fiber.Ctx) error {
	mediaType, _, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	if err == nil && mediaType == fiber.MIMEApplicationJSON {
		return nil
	}
	return problem.New(problem.TypeUnsupportedMedia, http.StatusUnsupportedMediaType,
		"the request body must be application/json")
}

// Pagination bounds.
const (
	defaultLimit = 20
	maxLimit     = 100
)

// Query parameters of the list route.
const (
	paramLimit  = "limit"
	paramCursor = "cursor"
	paramName   = "name"
)

// encodeCursor makes the opaque cursor that resumes a list after id.
func encodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(id, 10)))
}

func decodeCursor(cursor string) (int64, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return 0, false
	}
	id, err := strconv.ParseInt(string(raw), 10, 64)
	return id, err == nil && id > 0
}

// listQuery is the validated query of the list route.
type listQuery struct {
	filter productsbus.QueryFilter
	page   productsbus.Page
}

func parseListQuery(c *fiber.Ctx) (listQuery, error) {
	q := listQuery{
		filter: productsbus.QueryFilter{NameContains: c.Query(paramName)},
		page:   productsbus.Page{Limit: defaultLimit},
	}
	var errs []problem.FieldError
	if s := c.Query(paramLimit); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			errs = append(errs, problem.Field(paramLimit, "must be an integer from 1 to 100"))
		}
		q.page.Limit = n
	}
	if s := c.Query(paramCursor); s != "" {
		id, ok := decodeCursor(s)
		if !ok {
			errs = append(errs, problem.Field(paramCursor, "is not a cursor this service issued"))
		}
		q.page.AfterID = id
	}
	switch name := q.filter.NameContains; {
	case !utf8.ValidString(name) || strings.ContainsRune(name, 0):
		errs = append(errs, problem.Field(paramName, "must be UTF-8 text without NUL characters"))
	case utf8.RuneCountInString(name) > maxNameLength:
		errs = append(errs, problem.Field(paramName, fmt.Sprintf("must be at most %d characters", maxNameLength)))
	}
	if len(errs) > 0 {
		return listQuery{}, problem.Validation(errs...)
	}
	return q, nil
}
