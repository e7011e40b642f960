package usersapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/portico-mesh/portico/services/platform/problem"
	"github.com/portico-mesh/portico/services/users/usersbus"
)

// The API's behaviour over HTTP is tested with the real service in
// users_test.go; these are the pure pieces. (Cursors and JSON pointers are
// tested where they are implemented: platform/page and platform/jsonbody.)

func TestDocumentLoads(t *testing.T) {
	doc, err := OpenAPIDocument()
	if err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
}

func TestClassify(t *testing.T) {
	wrapped := func(err error) error { return fmt.Errorf("store: %w", err) }
	tests := []struct {
		err    error
		status int
		fields []string
	}{
		{wrapped(usersbus.ErrNotFound), http.StatusNotFound, nil},
		{wrapped(usersbus.ErrUniqueEmail), http.StatusConflict, []string{"email"}},
		{wrapped(usersbus.ErrUniqueUsername), http.StatusConflict, []string{"username"}},
		{wrapped(usersbus.ErrLastAdmin), http.StatusConflict, nil},
		{wrapped(usersbus.ErrConflict), http.StatusConflict, nil},
		{usersbus.ErrInvalidCredentials, http.StatusUnauthorized, nil},
		{usersbus.ErrUnauthenticated, http.StatusUnauthorized, nil},
		{usersbus.ErrForbidden, http.StatusForbidden, nil},
		{&usersbus.FieldForbiddenError{Field: "roles", Reason: "no"}, http.StatusForbidden, []string{"roles"}},
		{fmt.Errorf("%w: x", usersbus.ErrInvalid), http.StatusUnprocessableEntity, nil},
		{wrapped(context.DeadlineExceeded), http.StatusServiceUnavailable, nil},
		// The database shutting down under a request (SQLSTATE 57P01).
		{wrapped(&pgconn.PgError{Severity: "FATAL", Code: "57P01"}), http.StatusServiceUnavailable, nil},
	}
	for _, tt := range tests {
		p := Classify(tt.err)
		if p == nil || p.Status != tt.status {
			t.Errorf("Classify(%v) = %+v, want status %d", tt.err, p, tt.status)
			continue
		}
		var got []string
		for _, e := range p.Errors {
			got = append(got, e.Field)
		}
		if diff := cmp.Diff(tt.fields, got); diff != "" {
			t.Errorf("Classify(%v) fields (-want +got):\n%s", tt.err, diff)
		}
		if want := problem.ForStatus(tt.status).Type; p.Type != want {
			t.Errorf("Classify(%v) type %s, want %s", tt.err, p.Type, want)
		}
	}
	if p := Classify(errors.New("anything else")); p != nil {
		t.Errorf("unknown error classified as %+v; it must stay an opaque 500", p)
	}
}
