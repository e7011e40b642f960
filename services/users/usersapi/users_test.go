package usersapi_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"

	"github.com/portico-mesh/portico/services/platform/identity"
	"github.com/portico-mesh/portico/services/platform/problem"
	"github.com/portico-mesh/portico/services/users/usersapi"
)

const (
	cacheNoStore        = "no-store"
	cachePrivateNoStore = "private, no-store"
)

var ignoreTimes = cmpopts.IgnoreFields(userJSON{}, "CreatedAt", "UpdatedAt")

func TestRegisterAndLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.start(t)
	password := e.secret("correct horse battery")
	before := time.Now().Truncate(time.Second)

	r := expect(t, s.do(t, http.MethodPost, "/users", map[string]string{
		"username": "Alice.B-1", "email": "Alice.B@Example.COM", "password": password,
	}), http.StatusCreated)
	u := decodeUser(t, r)
	want := userJSON{ID: u.ID, Username: "Alice.B-1", Email: "alice.b@example.com", IsActive: true, Roles: []string{}}
	if diff := cmp.Diff(want, u, ignoreTimes); diff != "" {
		t.Errorf("registered user (-want +got):\n%s", diff)
	}
	if !strings.Contains(string(r.Body), `"roles":[]`) {
		t.Errorf("roles not an empty array: %s", r.Body)
	}
	if u.ID <= 0 || u.CreatedAt.Before(before) || u.CreatedAt.After(time.Now()) || !u.UpdatedAt.Equal(u.CreatedAt) {
		t.Errorf("id/times: %+v", u)
	}
	if got := r.Header.Get("Cache-Control"); got != cacheNoStore {
		t.Errorf("Cache-Control %q, want %q", got, cacheNoStore)
	}
	// Location is relative to the request URL.
	loc := r.Header.Get("Location")
	if loc != fmt.Sprintf("users/%d", u.ID) {
		t.Errorf("Location %q", loc)
	}
	base, _ := url.Parse(s.baseURL + "/users")
	ref, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	got := decodeUser(t, expect(t, s.do(t, http.MethodGet, base.ResolveReference(ref).Path, nil, as(identityOf(u))), http.StatusOK))
	if diff := cmp.Diff(u, got); diff != "" {
		t.Errorf("GET Location (-want +got):\n%s", diff)
	}

	// Login is case-insensitive in the email.
	lr := expect(t, s.do(t, http.MethodPost, "/login", map[string]string{"email": "ALICE.b@example.com", "password": password}), http.StatusOK)
	if cc, pragma := lr.Header.Get("Cache-Control"), lr.Header.Get("Pragma"); cc != cacheNoStore || pragma != "no-cache" {
		t.Errorf("token response Cache-Control %q Pragma %q", cc, pragma)
	}
	var body map[string]any
	lr.decode(t, &body)
	if len(body) != 3 || body["token_type"] != "Bearer" || body["expires_in"] != float64(600) {
		t.Errorf("token response %s", lr.Body)
	}
	tok, _ := body["access_token"].(string)
	after := time.Now()

	// Verified with the published JWKS, issuer and audience checked.
	claims := s.verify(t, tok)
	iat := claims.IssuedAt.Time
	if iat.Before(before) || iat.After(after) {
		t.Errorf("iat %v not within the request (%v..%v)", iat, before, after)
	}
	if !claims.NotBefore.Equal(iat) || !claims.ExpiresAt.Equal(iat.Add(10*time.Minute)) {
		t.Errorf("nbf %v exp %v, want iat %v and iat+10m", claims.NotBefore, claims.ExpiresAt, iat)
	}
	if _, err := uuid.Parse(claims.ID); err != nil {
		t.Errorf("jti %q is not a UUID: %v", claims.ID, err)
	}
	wantClaims := map[string]any{
		"iss": "portico-users-test", "aud": []any{"portico-test"}, "sub": strconv.FormatInt(u.ID, 10),
		"username": "Alice.B-1", "email": "alice.b@example.com", "roles": []any{},
		"iat": float64(iat.Unix()), "nbf": float64(iat.Unix()), "exp": float64(iat.Add(10 * time.Minute).Unix()),
		"jti": claims.ID,
	}
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantClaims, map[string]any(parsed.Claims.(jwt.MapClaims))); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}

	// The token names the key that signs, which the JWKS lists first.
	var jwks struct {
		Keys []map[string]string `json:"keys"`
	}
	expect(t, s.do(t, http.MethodGet, "/.well-known/jwks.json", nil), http.StatusOK).decode(t, &jwks)
	if parsed.Header["alg"] != "EdDSA" || len(jwks.Keys) == 0 || parsed.Header["kid"] != jwks.Keys[0]["kid"] {
		t.Errorf("token header %v, JWKS %v", parsed.Header, jwks.Keys)
	}
}

func TestJWKS(t *testing.T) {
	t.Parallel()
	s := newEnv(t).start(t)
	r := expect(t, s.do(t, http.MethodGet, "/.well-known/jwks.json", nil), http.StatusOK)
	if cc := r.Header.Get("Cache-Control"); cc != "public, max-age=300" {
		t.Errorf("Cache-Control %q", cc)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	r.decode(t, &set)
	if len(set.Keys) != 1 {
		t.Fatalf("keys %v, want the one generated key", set.Keys)
	}
	k := set.Keys[0]
	if k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["alg"] != "EdDSA" || k["use"] != "sig" || k["kid"] == "" || k["x"] == "" {
		t.Errorf("key %v", k)
	}
	if _, ok := k["d"]; ok {
		t.Error("the JWKS publishes the private key")
	}
}

func TestRegisterValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.start(t)
	valid := func(mutate func(m map[string]any)) map[string]any {
		m := map[string]any{"username": "valid_name", "email": "valid@example.com", "password": "long enough"}
		mutate(m)
		return m
	}
	tests := []struct {
		name        string
		body        any
		contentType string
		status      int
		fields      []string // sorted
	}{
		{name: "empty object", body: "{}", status: 422, fields: []string{"email", "password", "username"}},
		{name: "short username", body: valid(func(m map[string]any) { m["username"] = "ab" }), status: 422, fields: []string{"username"}},
		{name: "long username", body: valid(func(m map[string]any) { m["username"] = strings.Repeat("a", 51) }), status: 422, fields: []string{"username"}},
		{name: "username characters", body: valid(func(m map[string]any) { m["username"] = "no spaces!" }), status: 422, fields: []string{"username"}},
		{name: "email", body: valid(func(m map[string]any) { m["email"] = "not-an-email" }), status: 422, fields: []string{"email"}},
		{name: "short password", body: valid(func(m map[string]any) { m["password"] = "1234567" }), status: 422, fields: []string{"password"}},
		{name: "long password", body: valid(func(m map[string]any) { m["password"] = strings.Repeat("p", 129) }), status: 422, fields: []string{"password"}},
		{name: "everything wrong", body: map[string]any{"username": "a", "email": "b", "password": "c"}, status: 422, fields: []string{"email", "password", "username"}},
		{name: "unknown member", body: valid(func(m map[string]any) { m["roles"] = []string{"admin"} }), status: 422, fields: []string{"roles"}},
		{name: "is_active not settable", body: valid(func(m map[string]any) { m["is_active"] = false }), status: 422, fields: []string{"is_active"}},
		{name: "null member", body: valid(func(m map[string]any) { m["username"] = nil }), status: 422, fields: []string{"username"}},
		{name: "wrong types", body: map[string]any{"username": 5, "email": true, "password": []string{"x"}}, status: 422, fields: []string{"email", "password", "username"}},
		{name: "wrong type and missing", body: map[string]any{"username": 5}, status: 422, fields: []string{"email", "password", "username"}},
		{name: "not JSON content type", body: valid(func(map[string]any) {}), contentType: "text/plain", status: 415},
		{name: "form content type", body: "username=x", contentType: "application/x-www-form-urlencoded", status: 415},
		{name: "malformed JSON", body: `{"username":`, status: 400},
		{name: "array", body: `[]`, status: 400},
		{name: "string", body: `"x"`, status: 400},
		{name: "trailing data", body: `{}{}`, status: 400},
		{name: "member twice", body: `{"username":"valid_name","email":"valid@example.com","password":"long enough","username":"other_name"}`, status: 400},
		{name: "empty body", body: ``, status: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []requestOption
			if tt.contentType != "" {
				opts = append(opts, header("Content-Type", tt.contentType))
			}
			r := expect(t, s.do(t, http.MethodPost, "/users", tt.body, opts...), tt.status)
			p := r.problem(t)
			got := fields(p)
			slices.Sort(got)
			if diff := cmp.Diff(tt.fields, got); diff != "" {
				t.Errorf("fields (-want +got):\n%s\n%s", diff, r.Body)
			}
			if r.Header.Get("Cache-Control") != cacheNoStore {
				t.Errorf("Cache-Control %q", r.Header.Get("Cache-Control"))
			}
			wantType := map[int]string{400: problem.TypeMalformed, 415: problem.TypeUnsupportedMedia, 422: problem.TypeValidation}[tt.status]
			if p.Type != wantType || p.Status != tt.status {
				t.Errorf("problem %+v, want type %s", p, wantType)
			}
		})
	}

	t.Run("pointers", func(t *testing.T) {
		r := expect(t, s.do(t, http.MethodPost, "/users", map[string]any{"a/b": 1, "username": "x"}), 422)
		want := []problem.FieldError{
			{Field: "a/b", Pointer: "#/a~1b", Detail: "is not a member of this request"},
			{Field: "email", Pointer: "#/email", Detail: "is required"},
			{Field: "password", Pointer: "#/password", Detail: "is required"},
			{Field: "username", Pointer: "#/username", Detail: "must be 3 to 50 characters long"},
		}
		if diff := cmp.Diff(want, r.problem(t).Errors); diff != "" {
			t.Errorf("errors (-want +got):\n%s", diff)
		}
	})

	// None of the rejected requests emitted anything.
	u := s.register(t, "after", "after@example.com", "long enough")
	if ev := e.events.next(t); ev.Type != "user.created" || ev.Subject != fmt.Sprintf("users/%d", u.ID) {
		t.Errorf("first event %s %s, want user.created of the valid registration", ev.Type, ev.Subject)
	}
}

func TestRegisterConflicts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.start(t)
	alice := s.register(t, "alice", "alice@example.com", "alice's password")

	tests := []struct {
		name   string
		body   map[string]string
		fields []string
	}{
		{"email, other case", map[string]string{"username": "alice2", "email": "ALICE@Example.com", "password": "whatever1"}, []string{"email"}},
		{"username", map[string]string{"username": "alice", "email": "other@example.com", "password": "whatever1"}, []string{"username"}},
		{"username, other case", map[string]string{"username": "ALICE", "email": "other@example.com", "password": "whatever1"}, []string{"username"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := expect(t, s.do(t, http.MethodPost, "/users", tt.body), http.StatusConflict).problem(t)
			if p.Type != problem.TypeConflict || !cmp.Equal(tt.fields, fields(p)) {
				t.Errorf("problem %+v, want a conflict naming %v", p, tt.fields)
			}
		})
	}

	// Only the two successful registrations emitted events, in order.
	bob := s.register(t, "bob", "bob@example.com", "bob's password")
	for _, want := range []userJSON{alice, bob} {
		if ev := e.events.next(t); ev.Type != "user.created" || ev.Subject != fmt.Sprintf("users/%d", want.ID) {
			t.Errorf("event %s %s, want user.created of %s", ev.Type, ev.Subject, want.Username)
		}
	}
	e.events.none(t, 500*time.Millisecond)
}

func TestLoginFailuresLookAlike(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.start(t)
	password := "the right password"
	bob := s.register(t, "bob", "bob@example.com", password)

	attempt := func(email, password string) response {
		// The same request id, so that the bodies can be compared whole.
		return expect(t, s.do(t, http.MethodPost, "/login",
			map[string]string{"email": email, "password": e.secret(password)},
			header("X-Request-Id", "login-attempt")), http.StatusUnauthorized)
	}
	wrongPassword := attempt("bob@example.com", "the wrong password")
	unknownEmail := attempt("nobody@example.com", "the right password")
	if string(wrongPassword.Body) != string(unknownEmail.Body) {
		t.Errorf("bodies differ:\nwrong password: %s\nunknown email:  %s", wrongPassword.Body, unknownEmail.Body)
	}
	// An email no account can have (PostgreSQL text holds no NUL) is an
	// unknown email, not a failed query (schemathesis found a 500).
	if withNUL := attempt("bob\x00@example.com", "the right password"); string(withNUL.Body) != string(wrongPassword.Body) {
		t.Errorf("email with NUL: %s", withNUL.Body)
	}
	p := wrongPassword.problem(t)
	if p.Type != problem.TypeUnauthenticated || p.Detail != "invalid email or password" {
		t.Errorf("problem %+v", p)
	}
	if wrongPassword.Header.Get("Cache-Control") != cacheNoStore {
		t.Errorf("Cache-Control %q", wrongPassword.Header.Get("Cache-Control"))
	}

	// An unknown email costs a password hash too (without the dummy
	// comparison it would answer in a fraction of the time). Interleaved
	// medians, and a generous bound, keep this stable on a busy machine.
	var known, unknown []time.Duration
	for range 5 {
		for _, email := range []string{"bob@example.com", "nobody@example.com"} {
			began := time.Now()
			attempt(email, "the wrong password")
			if email == "bob@example.com" {
				known = append(known, time.Since(began))
			} else {
				unknown = append(unknown, time.Since(began))
			}
		}
	}
	if k, u := median(known), median(unknown); u < k/2 {
		t.Errorf("unknown email answers in %v, known email in %v: the difference reveals which emails exist", u, k)
	}

	// A deactivated account gets the same answer, even with the right password.
	expect(t, s.do(t, http.MethodPut, fmt.Sprintf("/users/%d", bob.ID), map[string]any{"is_active": false}, as(identityOf(bob))), http.StatusOK)
	if deactivated := attempt("bob@example.com", password); string(deactivated.Body) != string(wrongPassword.Body) {
		t.Errorf("deactivated account body differs: %s", deactivated.Body)
	}

	// Malformed logins are told what is wrong with the request.
	p = expect(t, s.do(t, http.MethodPost, "/login", map[string]any{"email": "bob@example.com"}), 422).problem(t)
	if !cmp.Equal([]string{"password"}, fields(p)) {
		t.Errorf("missing password: %+v", p)
	}
	expect(t, s.do(t, http.MethodPost, "/login", "email=x", header("Content-Type", "text/plain")), 415)
	expect(t, s.do(t, http.MethodPost, "/login", "{", header("Content-Type", "application/json")), 400)
}

func TestReadsRequireIdentityAndAreNotCached(t *testing.T) {
	t.Parallel()
	s := newEnv(t).start(t)
	alice := s.register(t, "alice", "alice@example.com", "alice's password")
	path := fmt.Sprintf("/users/%d", alice.ID)

	for _, p := range []string{"/users", path} {
		r := expect(t, s.do(t, http.MethodGet, p, nil), http.StatusUnauthorized)
		if r.problem(t).Type != problem.TypeUnauthenticated || r.Header.Get("Cache-Control") != cacheNoStore {
			t.Errorf("GET %s anonymous: %s %v", p, r.Body, r.Header)
		}
	}
	// A user id that is not one: the ingress would never send it.
	expect(t, s.do(t, http.MethodGet, path, nil, as(identity.Identity{UserID: "alice"})), http.StatusUnauthorized)

	r := expect(t, s.do(t, http.MethodGet, path, nil, as(identityOf(alice))), http.StatusOK)
	if diff := cmp.Diff(alice, decodeUser(t, r)); diff != "" {
		t.Errorf("GET (-want +got):\n%s", diff)
	}
	if cc := r.Header.Get("Cache-Control"); cc != cachePrivateNoStore {
		t.Errorf("Cache-Control %q, want %q", cc, cachePrivateNoStore)
	}
	r = expect(t, s.do(t, http.MethodGet, "/users", nil, as(identityOf(alice))), http.StatusOK)
	if cc := r.Header.Get("Cache-Control"); cc != cachePrivateNoStore {
		t.Errorf("list Cache-Control %q, want %q", cc, cachePrivateNoStore)
	}
	// A missing user is 404 to an admin; to anyone else, another user's
	// account, 403 (TestUpdateAndDeleteAuthorization).
	admin := identityOf(alice)
	admin.Roles = []string{"admin"}
	for _, p := range []string{"/users/999999", "/users/abc", "/users/0", "/users/-1"} {
		r := expect(t, s.do(t, http.MethodGet, p, nil, as(admin)), http.StatusNotFound)
		if r.problem(t).Type != problem.TypeNotFound || r.Header.Get("Cache-Control") != cacheNoStore {
			t.Errorf("GET %s: %s %v", p, r.Body, r.Header)
		}
	}
}

func TestListPagination(t *testing.T) {
	t.Parallel()
	s := newEnv(t).start(t)
	var all []userJSON
	for i := range 5 {
		all = append(all, s.register(t, fmt.Sprintf("user%d", i), fmt.Sprintf("user%d@example.com", i), "a password"))
	}
	// Only an admin lists others.
	admin := identityOf(all[0])
	admin.Roles = []string{"admin"}
	caller := as(admin)

	type page struct {
		Items      []userJSON `json:"items"`
		NextCursor string     `json:"next_cursor"`
	}
	var got []userJSON
	next := s.baseURL + "/users?limit=2"
	for pages := 0; next != ""; pages++ {
		if pages > 3 {
			t.Fatal("too many pages")
		}
		u, err := url.Parse(next)
		if err != nil {
			t.Fatal(err)
		}
		r := expect(t, s.do(t, http.MethodGet, u.RequestURI(), nil, caller), http.StatusOK)
		var p page
		r.decode(t, &p)
		got = append(got, p.Items...)
		link := r.Header.Get("Link")
		if (p.NextCursor == "") != (link == "") {
			t.Fatalf("next_cursor %q but Link %q", p.NextCursor, link)
		}
		if p.NextCursor == "" {
			if len(p.Items) != 1 {
				t.Errorf("last page has %d items, want 1", len(p.Items))
			}
			next = ""
			continue
		}
		if len(p.Items) != 2 {
			t.Errorf("page has %d items, want 2", len(p.Items))
		}
		m := regexp.MustCompile(`^<([^>]*)>; rel="next"$`).FindStringSubmatch(link)
		if m == nil {
			t.Fatalf("Link %q", link)
		}
		ref, err := url.Parse(m[1])
		if err != nil {
			t.Fatal(err)
		}
		if ref.Path != "" || ref.Query().Get("cursor") != p.NextCursor || ref.Query().Get("limit") != "2" {
			t.Errorf("Link target %q, want a query-only reference with the cursor and limit", m[1])
		}
		next = u.ResolveReference(ref).String()
	}
	if diff := cmp.Diff(all, got); diff != "" {
		t.Errorf("paged users (-want +got):\n%s", diff)
	}

	// Default limit: everything on one page.
	var p page
	r := expect(t, s.do(t, http.MethodGet, "/users", nil, caller), http.StatusOK)
	r.decode(t, &p)
	if len(p.Items) != 5 || p.NextCursor != "" || r.Header.Get("Link") != "" {
		t.Errorf("default page: %d items, cursor %q, Link %q", len(p.Items), p.NextCursor, r.Header.Get("Link"))
	}

	for query, want := range map[string][]string{
		"limit=0":             {"limit"},
		"limit=101":           {"limit"},
		"limit=ten":           {"limit"},
		"cursor=%21%21":       {"cursor"},
		"cursor=MA":           {"cursor"}, // base64url of "0"
		"cursor=MDE":          {"cursor"}, // "01": not how the service writes ids
		"limit=-1&cursor=x-y": {"cursor", "limit"},
	} {
		p := expect(t, s.do(t, http.MethodGet, "/users?"+query, nil, caller), 422).problem(t)
		got := fields(p)
		slices.Sort(got)
		if !cmp.Equal(want, got) {
			t.Errorf("?%s: fields %v, want %v", query, got, want)
		}
	}
	// Past the end is an empty page.
	r = expect(t, s.do(t, http.MethodGet, "/users?cursor="+encodeTestCursor(all[4].ID), nil, caller), http.StatusOK)
	p = page{}
	r.decode(t, &p)
	if p.Items == nil || len(p.Items) != 0 || p.NextCursor != "" {
		t.Errorf("past the end: %s", r.Body)
	}
}

func encodeTestCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(id, 10)))
}

func TestUpdateAndDeleteAuthorization(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	adminPassword := e.secret("admin password")
	s := e.start(t, withBootstrap("admin@example.com", adminPassword))
	admin := s.login(t, "admin@example.com", adminPassword)
	alice := s.register(t, "alice", "alice@example.com", "alice's password")
	bob := s.register(t, "bob", "bob@example.com", "bob's password")
	aliceID := s.login(t, "alice@example.com", "alice's password")
	alicePath, bobPath := fmt.Sprintf("/users/%d", alice.ID), fmt.Sprintf("/users/%d", bob.ID)

	// Another user's account is off limits, whether or not it exists:
	// reading it too.
	for _, p := range []string{bobPath, "/users/999999"} {
		for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
			var body any
			if method == http.MethodPut {
				body = map[string]any{"username": "hijacked"}
			}
			r := expect(t, s.do(t, method, p, body, as(aliceID)), http.StatusForbidden)
			if r.problem(t).Type != problem.TypeForbidden {
				t.Errorf("%s %s: %s", method, p, r.Body)
			}
		}
	}
	// A non-admin's list holds the caller alone; an admin's, everyone.
	for caller, want := range map[string]int{"alice": 1, "admin": 3} {
		id := aliceID
		if caller == "admin" {
			id = admin
		}
		var p struct{ Items []userJSON }
		expect(t, s.do(t, http.MethodGet, "/users", nil, as(id)), http.StatusOK).decode(t, &p)
		if len(p.Items) != want || (caller == "alice" && p.Items[0].ID != alice.ID) {
			t.Errorf("%s lists %+v, want %d users", caller, p.Items, want)
		}
	}
	// Anonymous callers are not even considered.
	expect(t, s.do(t, http.MethodPut, alicePath, map[string]any{"username": "anon"}), http.StatusUnauthorized)
	expect(t, s.do(t, http.MethodDelete, alicePath, nil), http.StatusUnauthorized)

	// Users change themselves.
	r := expect(t, s.do(t, http.MethodPut, alicePath, map[string]any{"username": "alice2"}, as(aliceID)), http.StatusOK)
	if u := decodeUser(t, r); u.Username != "alice2" || r.Header.Get("Cache-Control") != cacheNoStore {
		t.Errorf("self update: %s %v", r.Body, r.Header)
	}
	// ... but not their roles: refused, not ignored.
	r = expect(t, s.do(t, http.MethodPut, alicePath, map[string]any{"roles": []string{"admin"}, "username": "alice3"}, as(aliceID)), http.StatusForbidden)
	if p := r.problem(t); p.Type != problem.TypeForbidden || !cmp.Equal([]string{"roles"}, fields(p)) {
		t.Errorf("non-admin roles: %+v", p)
	}
	if u := decodeUser(t, expect(t, s.do(t, http.MethodGet, alicePath, nil, as(aliceID)), http.StatusOK)); u.Username != "alice2" || len(u.Roles) != 0 {
		t.Errorf("a refused update changed the user: %+v", u)
	}
	// Unknown roles are named, whoever sends them.
	r = expect(t, s.do(t, http.MethodPut, alicePath, map[string]any{"roles": []string{"admin", "root"}}, as(admin)), 422)
	if p := r.problem(t); !cmp.Equal([]problem.FieldError{{Field: "roles", Pointer: "#/roles/1", Detail: `"root" is not a known role (known: admin)`}}, p.Errors) {
		t.Errorf("unknown role: %+v", p)
	}

	// Admins change anyone, roles included.
	r = expect(t, s.do(t, http.MethodPut, bobPath, map[string]any{"email": "Bob.New@Example.com", "roles": []string{"admin", "admin"}}, as(admin)), http.StatusOK)
	want := userJSON{ID: bob.ID, Username: "bob", Email: "bob.new@example.com", IsActive: true, Roles: []string{"admin"}}
	if diff := cmp.Diff(want, decodeUser(t, r), ignoreTimes); diff != "" {
		t.Errorf("admin update (-want +got):\n%s", diff)
	}
	if got := s.login(t, "bob.new@example.com", "bob's password"); !cmp.Equal([]string{"admin"}, got.Roles) {
		t.Errorf("bob's token roles %v after the grant", got.Roles)
	}
	expect(t, s.do(t, http.MethodPut, "/users/999999", map[string]any{"username": "ghost"}, as(admin)), http.StatusNotFound)
	expect(t, s.do(t, http.MethodDelete, "/users/999999", nil, as(admin)), http.StatusNotFound)

	// Admins delete anyone; users themselves.
	r = expect(t, s.do(t, http.MethodDelete, alicePath, nil, as(admin)), http.StatusNoContent)
	if len(r.Body) != 0 || r.Header.Get("Cache-Control") != cacheNoStore {
		t.Errorf("delete: %q %v", r.Body, r.Header)
	}
	expect(t, s.do(t, http.MethodGet, alicePath, nil, as(admin)), http.StatusNotFound)
	carol := s.register(t, "carol", "carol@example.com", "carol's password")
	expect(t, s.do(t, http.MethodDelete, fmt.Sprintf("/users/%d", carol.ID), nil, as(identityOf(carol))), http.StatusNoContent)

	// Bodies are checked as strictly as at registration.
	expect(t, s.do(t, http.MethodPut, bobPath, map[string]any{"password_hash": "x"}, as(admin)), 422)
	expect(t, s.do(t, http.MethodPut, bobPath, "x", as(admin), header("Content-Type", "text/plain")), 415)
	expect(t, s.do(t, http.MethodPut, bobPath, "{", as(admin)), 400)
	p := expect(t, s.do(t, http.MethodPut, bobPath, map[string]any{"username": "x", "email": "y", "password": "z", "is_active": "yes", "roles": "admin"}, as(admin)), 422).problem(t)
	got := fields(p)
	slices.Sort(got)
	if !cmp.Equal([]string{"email", "is_active", "password", "roles", "username"}, got) {
		t.Errorf("fields %v", got)
	}
}

func TestDeactivationAndPasswordChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	adminPassword := e.secret("admin password")
	s := e.start(t, withBootstrap("admin@example.com", adminPassword))
	admin := s.login(t, "admin@example.com", adminPassword)
	carol := s.register(t, "carol", "carol@example.com", "first password")
	carolID := s.login(t, "carol@example.com", "first password")
	path := fmt.Sprintf("/users/%d", carol.ID)

	// A password change: the old one stops working, the new one works.
	newPassword := e.secret("second password")
	expect(t, s.do(t, http.MethodPut, path, map[string]any{"password": newPassword}, as(carolID)), http.StatusOK)
	expect(t, s.do(t, http.MethodPost, "/login", map[string]string{"email": "carol@example.com", "password": "first password"}), http.StatusUnauthorized)
	s.login(t, "carol@example.com", newPassword)

	// Deactivated: no login; the account cannot reactivate itself.
	r := expect(t, s.do(t, http.MethodPut, path, map[string]any{"is_active": false}, as(carolID)), http.StatusOK)
	if decodeUser(t, r).IsActive {
		t.Error("still active")
	}
	expect(t, s.do(t, http.MethodPost, "/login", map[string]string{"email": "carol@example.com", "password": newPassword}), http.StatusUnauthorized)
	p := expect(t, s.do(t, http.MethodPut, path, map[string]any{"is_active": true}, as(carolID)), http.StatusForbidden).problem(t)
	if !cmp.Equal([]string{"is_active"}, fields(p)) {
		t.Errorf("self reactivation: %+v", p)
	}
	// An admin can.
	expect(t, s.do(t, http.MethodPut, path, map[string]any{"is_active": true}, as(admin)), http.StatusOK)
	s.login(t, "carol@example.com", newPassword)
}

func TestUpdateConflictsAndNoOps(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.start(t)
	dave := s.register(t, "dave", "dave@example.com", "dave's password")
	s.register(t, "erin", "erin@example.com", "erin's password")
	for range 2 {
		e.events.next(t) // the registrations
	}
	path, caller := fmt.Sprintf("/users/%d", dave.ID), as(identityOf(dave))

	p := expect(t, s.do(t, http.MethodPut, path, map[string]any{"email": "ERIN@example.com"}, caller), http.StatusConflict).problem(t)
	if !cmp.Equal([]string{"email"}, fields(p)) {
		t.Errorf("email conflict: %+v", p)
	}
	p = expect(t, s.do(t, http.MethodPut, path, map[string]any{"username": "erin"}, caller), http.StatusConflict).problem(t)
	if !cmp.Equal([]string{"username"}, fields(p)) {
		t.Errorf("username conflict: %+v", p)
	}
	// Changes that change nothing store nothing.
	for _, body := range []map[string]any{{}, {"username": "dave", "email": "DAVE@example.com", "is_active": true}} {
		r := expect(t, s.do(t, http.MethodPut, path, body, caller), http.StatusOK)
		if diff := cmp.Diff(dave, decodeUser(t, r)); diff != "" {
			t.Errorf("no-op update %v (-want +got):\n%s", body, diff)
		}
	}
	// The next event is the next real change.
	expect(t, s.do(t, http.MethodPut, path, map[string]any{"username": "david"}, caller), http.StatusOK)
	ev := e.events.next(t)
	var data map[string]any
	if err := json.Unmarshal(ev.Data, &data); err != nil {
		t.Fatal(err)
	}
	if ev.Type != "user.updated" || data["username"] != "david" || data["version"] != float64(2) {
		t.Errorf("event %s %s, want user.updated to david, version 2", ev.Type, ev.Data)
	}
}

func TestLastAdminKeepsAdminRole(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	adminPassword := e.secret("admin password")
	s := e.start(t, withBootstrap("admin@example.com", adminPassword))
	admin := s.login(t, "admin@example.com", adminPassword)
	self := "/users/" + admin.UserID

	for _, body := range []map[string]any{{"roles": []string{}}, {"is_active": false}} {
		p := expect(t, s.do(t, http.MethodPut, self, body, as(admin)), http.StatusConflict).problem(t)
		if p.Type != problem.TypeConflict {
			t.Errorf("%v: %+v", body, p)
		}
	}
	expect(t, s.do(t, http.MethodDelete, self, nil, as(admin)), http.StatusConflict)

	// With a second admin, the first may step down.
	bob := s.register(t, "bob", "bob@example.com", "bob's password")
	expect(t, s.do(t, http.MethodPut, fmt.Sprintf("/users/%d", bob.ID), map[string]any{"roles": []string{"admin"}}, as(admin)), http.StatusOK)
	r := expect(t, s.do(t, http.MethodPut, self, map[string]any{"roles": []string{}}, as(admin)), http.StatusOK)
	if u := decodeUser(t, r); len(u.Roles) != 0 {
		t.Errorf("roles %v after stepping down", u.Roles)
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.start(t)
	start := time.Now().Add(-time.Second)
	password := e.secret("first password")
	u := s.register(t, "frank", "Frank@Example.com", password)
	caller := as(identityOf(u))
	path := fmt.Sprintf("/users/%d", u.ID)

	expect(t, s.do(t, http.MethodPut, path, map[string]any{"username": "franky", "is_active": false}, caller), http.StatusOK)
	newPassword := e.secret("second password")
	expect(t, s.do(t, http.MethodPut, path, map[string]any{"password": newPassword}, caller), http.StatusOK)
	expect(t, s.do(t, http.MethodDelete, path, nil, caller), http.StatusNoContent)

	subject := fmt.Sprintf("users/%d", u.ID)
	want := []struct {
		typ  string
		data string
	}{
		{"user.created", fmt.Sprintf(`{"id":%d,"username":"frank","email":"frank@example.com","is_active":true,"roles":[],"version":1}`, u.ID)},
		{"user.updated", fmt.Sprintf(`{"id":%d,"username":"franky","email":"frank@example.com","is_active":false,"roles":[],"version":2}`, u.ID)},
		{"user.updated", fmt.Sprintf(`{"id":%d,"username":"franky","email":"frank@example.com","is_active":false,"roles":[],"version":3}`, u.ID)},
		{"user.deleted", fmt.Sprintf(`{"id":%d}`, u.ID)},
	}
	seen := map[string]bool{}
	for _, w := range want {
		ev := e.events.next(t)
		if ev.Type != w.typ || ev.RouteKey != w.typ || ev.Subject != subject || ev.Source != "portico/users" ||
			ev.SpecVersion != "1.0" || ev.DataContentType != "application/json" {
			t.Errorf("envelope %s, want type %s subject %s", ev.Raw, w.typ, subject)
		}
		if diff := jsonDiff(t, w.data, ev.Data); diff != "" {
			t.Errorf("%s data (-want +got):\n%s", w.typ, diff)
		}
		id, err := uuid.Parse(ev.ID)
		if err != nil || id.Version() != 7 || seen[ev.ID] {
			t.Errorf("event id %q: want a fresh UUIDv7 (%v)", ev.ID, err)
		}
		seen[ev.ID] = true
		if ev.Time.Before(start) || ev.Time.After(time.Now()) {
			t.Errorf("event time %v", ev.Time)
		}
		for _, secret := range []string{password, newPassword, "argon2", "password"} {
			if strings.Contains(string(ev.Raw), secret) {
				t.Errorf("event %s contains %q", ev.Raw, secret)
			}
		}
	}
	e.events.none(t, 500*time.Millisecond)
}

// jsonDiff compares JSON values, not their spelling: events pass through a
// jsonb column, which reorders members.
func jsonDiff(t *testing.T, want string, got []byte) string {
	t.Helper()
	var w, g any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	return cmp.Diff(w, g)
}

func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	s := newEnv(t).start(t)
	r := expect(t, s.do(t, http.MethodGet, "/openapi.json", nil), http.StatusOK)
	doc, err := usersapi.OpenAPIDocument()
	if err != nil {
		t.Fatal(err)
	}
	wantJSON, err := doc.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var got, want any
	r.decode(t, &got)
	if err := json.Unmarshal(wantJSON, &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("served document differs from openapi.yaml (-want +got):\n%s", diff)
	}

	// Every mounted route is documented and every documented operation is
	// mounted, so the document stays true.
	operational := map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}
	var mounted []string
	for _, route := range s.srv.App().GetRoutes(true) {
		if route.Method == http.MethodHead || operational[route.Path] {
			continue
		}
		path := regexp.MustCompile(`:([A-Za-z]+)`).ReplaceAllString(route.Path, "{$1}")
		mounted = append(mounted, route.Method+" "+path)
	}
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	slices.Sort(mounted)
	mounted = slices.Compact(mounted)
	slices.Sort(documented)
	if diff := cmp.Diff(documented, mounted); diff != "" {
		t.Errorf("mounted routes vs documented operations (-documented +mounted):\n%s", diff)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
