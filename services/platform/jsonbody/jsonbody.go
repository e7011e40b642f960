// Package jsonbody reads request bodies the one way every Portico service
// does: the body must be declared as JSON and be exactly one JSON object;
// its members are checked by the handler, and every offending member is
// reported at once, in a stable order, in one 422 problem.
//
// Strictness is the point: an unknown member (a typo, a read-only field
// echoed back) or a member sent twice is never silently ignored.
package jsonbody

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/portico-mesh/portico/services/platform/problem"
)

// Members is a decoded JSON object: each member's value as raw JSON.
type Members map[string]json.RawMessage

// Decode checks c's Content-Type (a 415 problem unless it is JSON, see
// IsJSON) and reads its body as one JSON object (a 400 problem otherwise:
// empty, not an object, a member twice, data after the object).
func Decode(c *fiber.Ctx) (Members, error) {
	if !IsJSON(c.Get(fiber.HeaderContentType)) {
		return nil, problem.New(problem.TypeUnsupportedMedia, http.StatusUnsupportedMediaType,
			"the request body must be application/json")
	}
	return DecodeObject(c.Body())
}

// IsJSON reports whether a Content-Type header declares JSON:
// application/json or a structured syntax suffix type such as
// application/merge-patch+json (RFC 6839), parameters allowed.
func IsJSON(contentType string) bool {
	mediaType, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mediaType == fiber.MIMEApplicationJSON ||
		strings.HasPrefix(mediaType, "application/") && strings.HasSuffix(mediaType, "+json")
}

// DecodeObject reads body as exactly one JSON object, without
// interpreting its members.
func DecodeObject(body []byte) (Members, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, problem.Malformed("the request body is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil, malformed(err)
	}
	if tok != json.Delim('{') {
		return nil, problem.Malformed("the request body must be a JSON object")
	}
	members := Members{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, malformed(err)
		}
		name, _ := tok.(string) // inside an object the decoder yields only string names
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, malformed(err)
		}
		if _, twice := members[name]; twice {
			// encoding/json would keep the last silently; which one the
			// client meant is anyone's guess.
			return nil, problem.Malformed(fmt.Sprintf("the request body has the member %q more than once", name))
		}
		members[name] = value
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, malformed(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, problem.Malformed("the request body has data after the JSON object")
	}
	return members, nil
}

// malformed describes a decoding error without echoing Go types.
func malformed(err error) *problem.Problem {
	var syntax *json.SyntaxError
	detail := "malformed JSON"
	switch {
	case errors.As(err, &syntax):
		detail = fmt.Sprintf("%s (at byte %d)", syntax.Error(), syntax.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		detail = "unexpected end of input"
	}
	return problem.Malformed("the request body is not a valid JSON object: " + detail)
}

// Names returns the member names in order, so that errors come out in a
// stable order whatever the map's.
func (m Members) Names() []string {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Missing returns an error for every name in required that m lacks.
func (m Members) Missing(required ...string) []problem.FieldError {
	var errs []problem.FieldError
	for _, name := range required {
		if _, ok := m[name]; !ok {
			errs = append(errs, MemberError(name, "is required"))
		}
	}
	return errs
}

// Into decodes each member into its target in targets (a *string, *bool,
// *int or *[]string) and returns the names decoded. An unknown member, a
// null and a value of the wrong type are field errors.
func (m Members) Into(targets map[string]any) (present map[string]bool, errs []problem.FieldError) {
	present = make(map[string]bool, len(m))
	for _, name := range m.Names() {
		value := m[name]
		target, known := targets[name]
		switch {
		case !known:
			errs = append(errs, MemberError(name, "is not a member of this request"))
		case string(value) == "null":
			errs = append(errs, MemberError(name, "must not be null"))
		case json.Unmarshal(value, target) != nil:
			errs = append(errs, MemberError(name, "must be "+describe(target)))
		default:
			present[name] = true
		}
	}
	return present, errs
}

func describe(target any) string {
	switch target.(type) {
	case *string:
		return "a string"
	case *bool:
		return "a boolean"
	case *int, *int64:
		return "an integer"
	case *[]string:
		return "an array of strings"
	default:
		return "a JSON value of another type"
	}
}

// MemberError is a field error about a top-level member. The name came
// from the client, so its JSON pointer is escaped (RFC 6901) and written
// as a URI fragment.
func MemberError(name, detail string) problem.FieldError {
	return problem.FieldError{Field: name, Pointer: Pointer(name), Detail: detail}
}

// Pointer is the URI fragment form of the RFC 6901 pointer to tokens,
// e.g. #/roles/1.
func Pointer(tokens ...string) string {
	escape := strings.NewReplacer("~", "~0", "/", "~1")
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(escape.Replace(t))
	}
	return "#" + (&url.URL{Fragment: b.String()}).EscapedFragment()
}

// Validation is the 422 problem naming errs, sorted by member and pointer
// so that clients and tests see a stable list; nil when errs is empty.
func Validation(errs []problem.FieldError) error {
	if len(errs) == 0 {
		return nil
	}
	errs = slices.Clone(errs)
	slices.SortStableFunc(errs, func(a, b problem.FieldError) int {
		if c := strings.Compare(a.Field, b.Field); c != 0 {
			return c
		}
		return strings.Compare(a.Pointer, b.Pointer)
	})
	return problem.Validation(errs...)
}
