package problem_test

import (
	"net/http"
	"testing"

	"github.com/portico-mesh/portico/services/platform/problem"
)

// TestTypeFor: every client error has a client's type (never internal,
// which tells a client the fault is not theirs; 501, a request form not
// supported, is the client's too), every gateway failure is unavailable,
// and a status outside the error range is an internal error.
func TestTypeFor(t *testing.T) {
	for status, want := range map[int]string{
		400: problem.TypeMalformed, 401: problem.TypeUnauthenticated, 403: problem.TypeForbidden,
		404: problem.TypeNotFound, 405: problem.TypeMethodNotAllowed, 408: problem.TypeMalformed,
		409: problem.TypeConflict, 412: problem.TypePreconditionFailed, 413: problem.TypeTooLarge,
		414: problem.TypeMalformed, 415: problem.TypeUnsupportedMedia, 422: problem.TypeValidation,
		426: problem.TypeMalformed, 429: problem.TypeRateLimited, 431: problem.TypeMalformed,
		500: problem.TypeInternal, 501: problem.TypeMalformed, 502: problem.TypeUnavailable,
		503: problem.TypeUnavailable, 504: problem.TypeUnavailable,
	} {
		if got := problem.TypeFor(status); got != want {
			t.Errorf("TypeFor(%d) = %s, want %s", status, got, want)
		}
		if p := problem.ForStatus(status); p.Type != want || p.Status != status || p.Title != http.StatusText(status) {
			t.Errorf("ForStatus(%d) = %+v", status, p)
		}
	}
	if p := problem.ForStatus(200); p.Status != 500 || p.Type != problem.TypeInternal {
		t.Errorf("ForStatus(200) = %+v, want a 500 internal problem", p)
	}
}
