package usersbus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/alexedwards/argon2id"
	"github.com/google/go-cmp/cmp"

	"github.com/portico-mesh/portico/services/platform/identity"
)

func TestCheckUsername(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"bob", true},
		{"Alice_1.x-y", true},
		{strings.Repeat("a", 50), true},
		{"ab", false},
		{strings.Repeat("a", 51), false},
		{"with space", false},
		{"émile", false}, // ASCII letters only
		{"a@b", false},
		{"", false},
	}
	for _, tt := range tests {
		if err := CheckUsername(tt.in); (err == nil) != tt.ok {
			t.Errorf("CheckUsername(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestCheckEmail(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"a@example.com", true},
		{"Mixed.Case+tag@Example.COM", true},
		{"", false},
		{"no-at.example.com", false},
		{"a@localhost", false},
		{"a@example.", false},
		{"Alice <a@example.com>", false},
		{" a@example.com", false},
		{"a@@example.com", false},
		{strings.Repeat("a", 250) + "@x.io", false},
	}
	for _, tt := range tests {
		if err := CheckEmail(tt.in); (err == nil) != tt.ok {
			t.Errorf("CheckEmail(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestCheckPassword(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"12345678", true},
		{strings.Repeat("x", 128), true},
		{strings.Repeat("é", 8), true}, // characters, not bytes
		{"1234567", false},
		{strings.Repeat("x", 129), false},
		{strings.Repeat("é", 7), false},
	}
	for _, tt := range tests {
		if err := CheckPassword(tt.in); (err == nil) != tt.ok {
			t.Errorf("CheckPassword(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestRoles(t *testing.T) {
	if RoleAdmin != identity.RoleAdmin {
		t.Fatalf("RoleAdmin %q differs from the ingress's %q", RoleAdmin, identity.RoleAdmin)
	}
	if diff := cmp.Diff([]int{1, 3}, UnknownRoles([]string{"admin", "root", "admin", ""})); diff != "" {
		t.Errorf("UnknownRoles (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"admin"}, NormalizeRoles([]string{"admin", "admin"})); diff != "" {
		t.Errorf("NormalizeRoles (-want +got):\n%s", diff)
	}
	if got := NormalizeRoles(nil); got == nil || len(got) != 0 {
		t.Errorf("NormalizeRoles(nil) = %#v, want an empty non-nil slice", got)
	}
}

func TestActorRules(t *testing.T) {
	t.Parallel()
	yes, no := true, false
	roles := []string{RoleAdmin}
	user := Actor{UserID: 7}
	admin := Actor{UserID: 1, Roles: []string{RoleAdmin}}
	active := User{ID: 7, IsActive: true}
	inactive := User{ID: 7, IsActive: false}

	tests := []struct {
		name    string
		actor   Actor
		target  int64
		current User
		update  UpdateUser
		want    error
		field   string // of a FieldForbiddenError
	}{
		{name: "anonymous", actor: Actor{}, target: 7, want: ErrUnauthenticated},
		{name: "self", actor: user, target: 7, current: active},
		{name: "other", actor: user, target: 8, want: ErrForbidden},
		{name: "admin other", actor: admin, target: 8, current: active},
		{name: "self roles", actor: user, target: 7, current: active, update: UpdateUser{Roles: &roles}, field: "roles"},
		{name: "admin roles", actor: admin, target: 7, current: active, update: UpdateUser{Roles: &roles}},
		{name: "self deactivate", actor: user, target: 7, current: active, update: UpdateUser{IsActive: &no}},
		{name: "self reactivate", actor: user, target: 7, current: inactive, update: UpdateUser{IsActive: &yes}, field: "is_active"},
		{name: "self active stays", actor: user, target: 7, current: active, update: UpdateUser{IsActive: &yes}},
		{name: "admin reactivate", actor: admin, target: 7, current: inactive, update: UpdateUser{IsActive: &yes}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.actor.mayChange(tt.target)
			if err == nil {
				err = tt.actor.mayUpdate(tt.update)
			}
			if err == nil {
				err = tt.actor.mayApply(tt.current, tt.update)
			}
			if tt.field != "" {
				var ffe *FieldForbiddenError
				if !errors.As(err, &ffe) || ffe.Field != tt.field {
					t.Fatalf("err = %v, want a FieldForbiddenError on %s", err, tt.field)
				}
				return
			}
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestPasswordHashParameters(t *testing.T) {
	t.Parallel()
	pw, err := newPasswords()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	hash, err := pw.hash(ctx, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	params, salt, key, err := argon2id.DecodeHash(string(hash))
	if err != nil {
		t.Fatal(err)
	}
	want := argon2id.Params{Memory: 19456, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32}
	got := *params
	got.SaltLength, got.KeyLength = uint32(len(salt)), uint32(len(key))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("argon2id parameters (-want +got):\n%s", diff)
	}
	if ok, err := pw.matches(ctx, "correct horse", hash); !ok || err != nil {
		t.Errorf("matches(right password) = %v, %v", ok, err)
	}
	if ok, err := pw.matches(ctx, "wrong horse", hash); ok || err != nil {
		t.Errorf("matches(wrong password) = %v, %v", ok, err)
	}
	if err := pw.burn(ctx, "anything"); err != nil {
		t.Errorf("burn: %v", err)
	}
}

func TestPasswordHashNeverPrints(t *testing.T) {
	const raw = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$a2V5"
	u := User{ID: 1, Username: "bob", PasswordHash: raw}

	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("user", "user", u, "hash", u.PasswordHash)
	marshaled, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"%v": fmt.Sprintf("%v", u), "%+v": fmt.Sprintf("%+v", u), "%#v": fmt.Sprintf("%#v", u),
		"%s": fmt.Sprintf("%s", u.PasswordHash), "%q": fmt.Sprintf("%q", u.PasswordHash),
		"slog": logged.String(), "json": string(marshaled),
	}
	for name, out := range outputs {
		if strings.Contains(out, "argon2id") || strings.Contains(out, "c2FsdA") {
			t.Errorf("%s prints the hash: %s", name, out)
		}
	}
	if string(u.PasswordHash) != raw {
		t.Error("the store can no longer read the hash")
	}
}

func TestEventDataNeverCarriesTheHash(t *testing.T) {
	u := User{ID: 3, Username: "bob", Email: "b@x.io", PasswordHash: "$argon2id$secret", IsActive: true, Version: 4}
	body, err := json.Marshal(toEventData(u))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":3,"username":"bob","email":"b@x.io","is_active":true,"roles":[],"version":4}`
	if string(body) != want {
		t.Errorf("event data\n got %s\nwant %s", body, want)
	}
}

func TestApply(t *testing.T) {
	name, email := "carol", "Carol@X.io"
	current := User{ID: 1, Username: "bob", Email: "b@x.io", PasswordHash: "old", IsActive: true, Roles: []string{}}

	if _, changed := apply(current, UpdateUser{}, ""); changed {
		t.Error("an empty update changes the user")
	}
	same := "bob"
	if _, changed := apply(current, UpdateUser{Username: &same}, ""); changed {
		t.Error("setting the same username changes the user")
	}
	next, changed := apply(current, UpdateUser{Username: &name, Email: &email}, "new")
	if !changed || next.Username != "carol" || next.Email != "carol@x.io" || next.PasswordHash != "new" {
		t.Errorf("apply = %+v, %v", next, changed)
	}
	if current.Username != "bob" {
		t.Error("apply modified its input")
	}
}
