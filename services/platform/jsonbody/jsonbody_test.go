package jsonbody

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portico-mesh/portico/services/platform/problem"
)

func TestIsJSON(t *testing.T) {
	for header, want := range map[string]bool{
		"application/json":                        true,
		"application/json; charset=utf-8":         true,
		"Application/JSON":                        true,
		"application/merge-patch+json":            true,
		"application/vnd.portico.product+json":    true,
		"application/problem+json; charset=utf-8": true,
		"":                                  false,
		"text/plain":                        false,
		"application/jsonp":                 false,
		"application/x-www-form-urlencoded": false,
		"text/x+json":                       false,
		"application/json; =broken":         false,
	} {
		if got := IsJSON(header); got != want {
			t.Errorf("IsJSON(%q) = %v, want %v", header, got, want)
		}
	}
}

func TestDecodeObject(t *testing.T) {
	members, err := DecodeObject([]byte(` {"b": [1, {"x": null}], "a": "s", "c": null} `))
	if err != nil {
		t.Fatal(err)
	}
	want := Members{"a": json.RawMessage(`"s"`), "b": json.RawMessage(`[1, {"x": null}]`), "c": json.RawMessage(`null`)}
	if diff := cmp.Diff(want, members); diff != "" {
		t.Errorf("members (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a", "b", "c"}, members.Names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	if m, err := DecodeObject([]byte(`{}`)); err != nil || len(m) != 0 {
		t.Errorf("empty object: %v, %v", m, err)
	}
}

func TestDecodeObjectRefuses(t *testing.T) {
	for name, body := range map[string]string{
		"empty":            "",
		"blank":            " \n",
		"null":             "null",
		"array":            "[]",
		"string":           `"x"`,
		"number":           "1",
		"unterminated":     `{"a":`,
		"syntax":           `{"a" 1}`,
		"trailing object":  "{}{}",
		"trailing garbage": "{} x",
		"member twice":     `{"a": 1, "b": 2, "a": 1}`,
		"nested bad":       `{"a": [1,}`,
	} {
		_, err := DecodeObject([]byte(body))
		var p *problem.Problem
		if !errors.As(err, &p) || p.Status != http.StatusBadRequest || p.Type != problem.TypeMalformed {
			t.Errorf("%s: %v, want a 400 malformed problem", name, err)
		}
	}
}

func TestInto(t *testing.T) {
	var (
		name   string
		active bool
		roles  []string
	)
	m, err := DecodeObject([]byte(`{"name":"x","active":"yes","roles":["a"],"zz":1,"a/b":2,"nil":null}`))
	if err != nil {
		t.Fatal(err)
	}
	present, errs := m.Into(map[string]any{"name": &name, "active": &active, "roles": &roles, "nil": &name})
	if diff := cmp.Diff(map[string]bool{"name": true, "roles": true}, present); diff != "" {
		t.Errorf("present (-want +got):\n%s", diff)
	}
	want := []problem.FieldError{
		{Field: "a/b", Pointer: "#/a~1b", Detail: "is not a member of this request"},
		{Field: "active", Pointer: "#/active", Detail: "must be a boolean"},
		{Field: "nil", Pointer: "#/nil", Detail: "must not be null"},
		{Field: "zz", Pointer: "#/zz", Detail: "is not a member of this request"},
	}
	if diff := cmp.Diff(want, errs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	if name != "x" || !cmp.Equal([]string{"a"}, roles) {
		t.Errorf("decoded name %q roles %v", name, roles)
	}
	if diff := cmp.Diff([]problem.FieldError{{Field: "b", Pointer: "#/b", Detail: "is required"}}, m.Missing("name", "b")); diff != "" {
		t.Errorf("missing (-want +got):\n%s", diff)
	}
}

func TestPointer(t *testing.T) {
	tests := map[string][]string{
		"#/email":     {"email"},
		"#/roles/1":   {"roles", "1"},
		"#/a~1b":      {"a/b"},
		"#/a~0b":      {"a~b"},
		"#/with%20sp": {"with sp"},
	}
	for want, tokens := range tests {
		if got := Pointer(tokens...); got != want {
			t.Errorf("Pointer(%q) = %q, want %q", tokens, got, want)
		}
	}
}

func TestValidationSortsAndIsNilWhenClean(t *testing.T) {
	if err := Validation(nil); err != nil {
		t.Errorf("Validation(nil) = %v", err)
	}
	err := Validation([]problem.FieldError{
		MemberError("username", "u"), {Field: "roles", Pointer: "#/roles/1", Detail: "r1"},
		MemberError("email", "e"), {Field: "roles", Pointer: "#/roles/0", Detail: "r0"},
	})
	var p *problem.Problem
	if !errors.As(err, &p) || p.Status != http.StatusUnprocessableEntity {
		t.Fatalf("Validation = %v", err)
	}
	var got []string
	for _, e := range p.Errors {
		got = append(got, e.Pointer)
	}
	if diff := cmp.Diff([]string{"#/email", "#/roles/0", "#/roles/1", "#/username"}, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}
