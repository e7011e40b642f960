// Package problem implements RFC 9457 problem details, the one error body
// every Portico HTTP surface returns.
package problem

import (
	"fmt"
	"net/http"
)

// ContentType is the media type of a problem details body.
const ContentType = "application/problem+json"

// Type URIs are stable identifiers that clients may switch on; they never
// change once published. README.md lists them.
const (
	TypeMalformed          = "urn:portico:problem:malformed-request"
	TypeValidation         = "urn:portico:problem:validation"
	TypeUnauthenticated    = "urn:portico:problem:unauthenticated"
	TypeForbidden          = "urn:portico:problem:forbidden"
	TypeNotFound           = "urn:portico:problem:not-found"
	TypeMethodNotAllowed   = "urn:portico:problem:method-not-allowed"
	TypeConflict           = "urn:portico:problem:conflict"
	TypePreconditionFailed = "urn:portico:problem:precondition-failed"
	TypeUnsupportedMedia   = "urn:portico:problem:unsupported-media-type"
	TypeTooLarge           = "urn:portico:problem:payload-too-large"
	TypeRateLimited        = "urn:portico:problem:rate-limited"
	TypeInternal           = "urn:portico:problem:internal"
	TypeUnavailable        = "urn:portico:problem:unavailable"
)

// FieldError names one offending member of a request body or query.
type FieldError struct {
	// Field is the member name as the client sent it, e.g. "email".
	Field string `json:"field"`
	// Pointer is the RFC 6901 JSON pointer to the member, as in RFC 9457's example.
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

// Problem is an RFC 9457 problem details object. It implements error so that
// handlers can return it and the error handler renders it unchanged.
type Problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	Instance  string       `json:"instance,omitempty"`
	RequestID string       `json:"request_id,omitempty"`
	Errors    []FieldError `json:"errors,omitempty"`
}

func (p *Problem) Error() string {
	if p.Detail != "" {
		return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail)
	}
	return fmt.Sprintf("%d %s", p.Status, p.Title)
}

// New returns a problem of the given type and status with the standard
// reason phrase as its title.
func New(typ string, status int, detail string) *Problem {
	return &Problem{Type: typ, Title: http.StatusText(status), Status: status, Detail: detail}
}

// Field returns a FieldError for a top-level member.
func Field(name, detail string) FieldError {
	return FieldError{Field: name, Pointer: "#/" + name, Detail: detail}
}

// Validation is the problem for a well-formed request whose members break
// the rules; each offending member is listed.
func Validation(errs ...FieldError) *Problem {
	p := New(TypeValidation, http.StatusUnprocessableEntity, "the request has invalid members")
	p.Errors = errs
	return p
}

// Malformed is the problem for a body that is not the JSON the route takes.
func Malformed(detail string) *Problem {
	return New(TypeMalformed, http.StatusBadRequest, detail)
}

// NotFound is the problem for a missing resource.
func NotFound(detail string) *Problem { return New(TypeNotFound, http.StatusNotFound, detail) }

// Unauthenticated is the problem for a request without a valid identity.
func Unauthenticated(detail string) *Problem {
	return New(TypeUnauthenticated, http.StatusUnauthorized, detail)
}

// Forbidden is the problem for an identity that may not do what it asked.
func Forbidden(detail string) *Problem { return New(TypeForbidden, http.StatusForbidden, detail) }

// Conflict is the problem for a change that clashes with existing state.
func Conflict(detail string, errs ...FieldError) *Problem {
	p := New(TypeConflict, http.StatusConflict, detail)
	p.Errors = errs
	return p
}

// PreconditionFailed is the problem for a stale If-Match.
func PreconditionFailed(detail string) *Problem {
	return New(TypePreconditionFailed, http.StatusPreconditionFailed, detail)
}

// TypeFor is the type that stands for a bare HTTP status: the one mapping
// from status to type, used by every service for the framework's own errors
// and by the control plane for every reply the ingress makes itself. A
// client error it has no more precise type for is a malformed request,
// never an internal error: the client can fix it.
func TypeFor(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return TypeUnauthenticated
	case http.StatusForbidden:
		return TypeForbidden
	case http.StatusNotFound:
		return TypeNotFound
	case http.StatusMethodNotAllowed:
		return TypeMethodNotAllowed
	case http.StatusConflict:
		return TypeConflict
	case http.StatusPreconditionFailed:
		return TypePreconditionFailed
	case http.StatusRequestEntityTooLarge:
		return TypeTooLarge
	case http.StatusUnsupportedMediaType:
		return TypeUnsupportedMedia
	case http.StatusUnprocessableEntity:
		return TypeValidation
	case http.StatusTooManyRequests:
		return TypeRateLimited
	case http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusBadGateway:
		return TypeUnavailable
	case http.StatusNotImplemented:
		// A request in a form the server does not support (an unknown
		// transfer coding): the client's to change, not a fault inside.
		return TypeMalformed
	}
	if status >= 400 && status < 500 {
		return TypeMalformed
	}
	return TypeInternal
}

// ForStatus returns the problem that stands for a bare HTTP status, used for
// errors raised by the framework itself (unknown route, body too large...).
func ForStatus(status int) *Problem {
	if status < 400 || status > 599 {
		status = http.StatusInternalServerError
	}
	return New(TypeFor(status), status, "")
}
