package usersapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/portico-mesh/portico/services/platform/problem"
)

// members maps each member a request body may have to where it decodes.
// Targets are *string, *bool or *[]string.
type members map[string]any

// decodeBody decodes c's JSON object body into targets and returns the names
// of the members present. It is strict so that a typo never goes unnoticed:
// a non-JSON Content-Type is a 415 and a body that is not one JSON object a
// 400 (err); unknown members, nulls and wrongly typed members are returned
// as field errors, for the caller to report with its own in one 422.
func decodeBody(c *fiber.Ctx, targets members) (present map[string]bool, errs []problem.FieldError, err error) {
	if err := checkJSONContentType(c.Get(fiber.HeaderContentType)); err != nil {
		return nil, nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(c.Body()))
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, problem.Malformed("the request body is empty; a JSON object is required")
		}
		if se := (*json.SyntaxError)(nil); errors.As(err, &se) {
			return nil, nil, problem.Malformed(fmt.Sprintf("the request body is not valid JSON (at byte %d)", se.Offset))
		}
		return nil, nil, problem.Malformed("the request body must be a JSON object")
	}
	if raw == nil {
		return nil, nil, problem.Malformed("the request body must be a JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, problem.Malformed("the request body has data after the JSON object")
	}

	names := make([]string, 0, len(raw))
	for name := range raw {
		names = append(names, name)
	}
	slices.Sort(names) // a stable order of errors
	present = make(map[string]bool, len(raw))
	for _, name := range names {
		value := raw[name]
		target, known := targets[name]
		switch {
		case !known:
			errs = append(errs, memberError(name, "is not a member of this request"))
		case string(value) == "null":
			errs = append(errs, memberError(name, "must not be null"))
		case json.Unmarshal(value, target) != nil:
			errs = append(errs, memberError(name, "must be "+describe(target)))
		default:
			present[name] = true
		}
	}
	return present, errs, nil
}

func checkJSONContentType(header string) error {
	mediaType, _, err := mime.ParseMediaType(header)
	if err == nil && (mediaType == "application/json" ||
		strings.HasPrefix(mediaType, "application/") && strings.HasSuffix(mediaType, "+json")) {
		return nil
	}
	return problem.New(problem.TypeUnsupportedMedia, fiber.StatusUnsupportedMediaType,
		"the request body must be application/json")
}

func describe(target any) string {
	switch target.(type) {
	case *string:
		return "a string"
	case *bool:
		return "a boolean"
	case *[]string:
		return "an array of strings"
	default:
		return fmt.Sprintf("%T", target)
	}
}

// memberError names a top-level member whose name came from the client, so
// its JSON pointer is escaped (RFC 6901) and written as a URI fragment.
func memberError(name, detail string) problem.FieldError {
	return problem.FieldError{Field: name, Pointer: pointer(name), Detail: detail}
}

func pointer(tokens ...string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(t))
	}
	return "#" + (&url.URL{Fragment: b.String()}).EscapedFragment()
}

// required returns errs plus an error for every member of names that is
// missing from present and not already named in errs.
func required(present map[string]bool, errs []problem.FieldError, names ...string) []problem.FieldError {
	for _, n := range names {
		named := slices.ContainsFunc(errs, func(e problem.FieldError) bool { return e.Field == n })
		if !present[n] && !named {
			errs = append(errs, memberError(n, "is required"))
		}
	}
	return errs
}
