package usersdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/migrations"
	"github.com/portico-mesh/portico/services/platform/events"
	"github.com/portico-mesh/portico/services/platform/outbox"
	"github.com/portico-mesh/portico/services/platform/pgstore/pgtest"
	"github.com/portico-mesh/portico/services/platform/telemetry"
	"github.com/portico-mesh/portico/services/users/usersbus"
)

func TestMain(m *testing.M) {
	os.Exit(localenvtest.Run(m, localenvtest.Postgres))
}

func newStore(t *testing.T) (*Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.NewPool(t, migrations.Users())
	return NewStore(pool, outbox.NewWriter(telemetry.Tracing{})), pool
}

// eventOf builds events the way the business layer does, with a fixed type.
func eventOf(typ string) usersbus.EventFunc {
	return func(u usersbus.User) (events.Envelope, error) {
		return events.New(typ, usersbus.EventSource, usersbus.EventSubject(u.ID), map[string]int64{"id": u.ID, "version": u.Version}, time.Now())
	}
}

type outboxRow struct {
	Type    string
	Subject string
	Data    string
}

func outboxRows(t *testing.T, pool *pgxpool.Pool) []outboxRow {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT event_type, payload FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var typ string
		var payload []byte
		if err := rows.Scan(&typ, &payload); err != nil {
			t.Fatal(err)
		}
		var ev events.Envelope
		if err := json.Unmarshal(payload, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type != typ {
			t.Errorf("event_type %s, payload type %s", typ, ev.Type)
		}
		out = append(out, outboxRow{Type: typ, Subject: ev.Subject, Data: string(ev.Data)})
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func newUser(name string, roles ...string) usersbus.User {
	if roles == nil {
		roles = []string{}
	}
	return usersbus.User{
		Username: name, Email: name + "@example.com", PasswordHash: "hash-of-" + usersbus.PasswordHash(name),
		IsActive: true, Roles: roles,
	}
}

func mustCreate(t *testing.T, s *Store, u usersbus.User) usersbus.User {
	t.Helper()
	created, err := s.Create(context.Background(), u, eventOf(usersbus.EventUserCreated))
	if err != nil {
		t.Fatal(err)
	}
	return created
}

func TestCreateAndQuery(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()

	in := newUser("alice", usersbus.RoleAdmin)
	created := mustCreate(t, s, in)
	if created.ID <= 0 || created.Version != 1 || created.CreatedAt.IsZero() || !created.UpdatedAt.Equal(created.CreatedAt) {
		t.Errorf("created = %+v, want an id, version 1 and equal times", created)
	}
	want := in
	want.ID, want.Version, want.CreatedAt, want.UpdatedAt = created.ID, 1, created.CreatedAt, created.UpdatedAt
	if diff := cmp.Diff(want, created); diff != "" {
		t.Errorf("created (-want +got):\n%s", diff)
	}
	if string(created.PasswordHash) != "hash-of-alice" {
		t.Error("hash not stored as given")
	}

	byID, err := s.QueryByID(ctx, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	byEmail, err := s.QueryByEmail(ctx, "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]usersbus.User{"QueryByID": byID, "QueryByEmail": byEmail} {
		if diff := cmp.Diff(created, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	if _, err := s.QueryByID(ctx, created.ID+100); !errors.Is(err, usersbus.ErrNotFound) {
		t.Errorf("QueryByID(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.QueryByEmail(ctx, "nobody@example.com"); !errors.Is(err, usersbus.ErrNotFound) {
		t.Errorf("QueryByEmail(missing) = %v, want ErrNotFound", err)
	}

	wantRows := []outboxRow{{
		Type: usersbus.EventUserCreated, Subject: fmt.Sprintf("users/%d", created.ID),
		Data: fmt.Sprintf(`{"id": %d, "version": 1}`, created.ID),
	}}
	if diff := cmp.Diff(wantRows, outboxRows(t, pool)); diff != "" {
		t.Errorf("outbox (-want +got):\n%s", diff)
	}
}

func TestUniqueViolationsMapAndLeaveNoEvent(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	alice := mustCreate(t, s, newUser("alice"))
	bob := mustCreate(t, s, newUser("bob"))

	sameEmail := newUser("alice2")
	sameEmail.Email = alice.Email
	if _, err := s.Create(ctx, sameEmail, eventOf(usersbus.EventUserCreated)); !errors.Is(err, usersbus.ErrUniqueEmail) {
		t.Errorf("Create(same email) = %v, want ErrUniqueEmail", err)
	}
	sameName := newUser("alice")
	sameName.Email = "other@example.com"
	if _, err := s.Create(ctx, sameName, eventOf(usersbus.EventUserCreated)); !errors.Is(err, usersbus.ErrUniqueUsername) {
		t.Errorf("Create(same username) = %v, want ErrUniqueUsername", err)
	}
	bobAsAlice := bob
	bobAsAlice.Email = alice.Email
	if _, err := s.Update(ctx, bobAsAlice, eventOf(usersbus.EventUserUpdated)); !errors.Is(err, usersbus.ErrUniqueEmail) {
		t.Errorf("Update(taken email) = %v, want ErrUniqueEmail", err)
	}
	bobAsAlice = bob
	bobAsAlice.Username = alice.Username
	if _, err := s.Update(ctx, bobAsAlice, eventOf(usersbus.EventUserUpdated)); !errors.Is(err, usersbus.ErrUniqueUsername) {
		t.Errorf("Update(taken username) = %v, want ErrUniqueUsername", err)
	}

	if rows := outboxRows(t, pool); len(rows) != 2 {
		t.Errorf("outbox holds %d events, want only the 2 creations: %+v", len(rows), rows)
	}
	got, err := s.QueryByID(ctx, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(bob, got); diff != "" {
		t.Errorf("bob changed by failed updates (-want +got):\n%s", diff)
	}
}

func TestFailingEventRollsBackTheChange(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	boom := errors.New("boom")
	failing := func(usersbus.User) (events.Envelope, error) { return events.Envelope{}, boom }

	if _, err := s.Create(ctx, newUser("alice"), failing); !errors.Is(err, boom) {
		t.Fatalf("Create = %v, want the event error", err)
	}
	if _, err := s.QueryByEmail(ctx, "alice@example.com"); !errors.Is(err, usersbus.ErrNotFound) {
		t.Errorf("user stored although its event failed: %v", err)
	}
	bob := mustCreate(t, s, newUser("bob"))
	changed := bob
	changed.Username = "robert"
	if _, err := s.Update(ctx, changed, failing); !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want the event error", err)
	}
	if err := s.Delete(ctx, bob.ID, failing); !errors.Is(err, boom) {
		t.Fatalf("Delete = %v, want the event error", err)
	}
	got, err := s.QueryByID(ctx, bob.ID)
	if err != nil || got.Username != "bob" {
		t.Errorf("bob = %+v, %v; want unchanged", got, err)
	}
	if rows := outboxRows(t, pool); len(rows) != 1 {
		t.Errorf("outbox holds %d events, want 1: %+v", len(rows), rows)
	}
}

func TestUpdateChecksVersion(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	bob := mustCreate(t, s, newUser("bob"))

	first := bob
	first.Username = "robert"
	first.Roles = []string{usersbus.RoleAdmin}
	updated, err := s.Update(ctx, first, eventOf(usersbus.EventUserUpdated))
	if err != nil {
		t.Fatal(err)
	}
	if updated.Version != 2 || updated.Username != "robert" || !updated.UpdatedAt.After(bob.UpdatedAt) ||
		!updated.CreatedAt.Equal(bob.CreatedAt) || !cmp.Equal(updated.Roles, []string{"admin"}) {
		t.Errorf("updated = %+v", updated)
	}

	stale := bob // still version 1
	stale.Email = "stale@example.com"
	if _, err := s.Update(ctx, stale, eventOf(usersbus.EventUserUpdated)); !errors.Is(err, usersbus.ErrVersionChanged) {
		t.Errorf("Update(stale) = %v, want ErrVersionChanged", err)
	}
	missing := bob
	missing.ID = bob.ID + 100
	if _, err := s.Update(ctx, missing, eventOf(usersbus.EventUserUpdated)); !errors.Is(err, usersbus.ErrNotFound) {
		t.Errorf("Update(missing) = %v, want ErrNotFound", err)
	}
	want := []outboxRow{
		{Type: usersbus.EventUserCreated, Subject: fmt.Sprintf("users/%d", bob.ID), Data: fmt.Sprintf(`{"id": %d, "version": 1}`, bob.ID)},
		{Type: usersbus.EventUserUpdated, Subject: fmt.Sprintf("users/%d", bob.ID), Data: fmt.Sprintf(`{"id": %d, "version": 2}`, bob.ID)},
	}
	if diff := cmp.Diff(want, outboxRows(t, pool)); diff != "" {
		t.Errorf("outbox (-want +got):\n%s", diff)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	bob := mustCreate(t, s, newUser("bob"))

	var seen usersbus.User
	ev := func(u usersbus.User) (events.Envelope, error) {
		seen = u
		return eventOf(usersbus.EventUserDeleted)(u)
	}
	if err := s.Delete(ctx, bob.ID, ev); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(bob, seen); diff != "" {
		t.Errorf("event built from (-want +got):\n%s", diff)
	}
	if _, err := s.QueryByID(ctx, bob.ID); !errors.Is(err, usersbus.ErrNotFound) {
		t.Errorf("QueryByID after delete = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, bob.ID, ev); !errors.Is(err, usersbus.ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
	rows := outboxRows(t, pool)
	if len(rows) != 2 || rows[1].Type != usersbus.EventUserDeleted {
		t.Errorf("outbox = %+v, want created then deleted", rows)
	}
}

func TestQueryPages(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	var ids []int64
	for _, name := range []string{"u1", "u2", "u3", "u4", "u5"} {
		ids = append(ids, mustCreate(t, s, newUser(name)).ID)
	}
	var got []int64
	after := int64(0)
	for {
		page, err := s.Query(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range page {
			got = append(got, u.ID)
		}
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].ID
	}
	if diff := cmp.Diff(ids, got); diff != "" {
		t.Errorf("paged ids (-want +got):\n%s", diff)
	}
}

func TestLastActiveAdminIsKept(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := context.Background()
	admin := mustCreate(t, s, newUser("root", usersbus.RoleAdmin))
	plain := mustCreate(t, s, newUser("plain"))

	demoted := admin
	demoted.Roles = []string{}
	deactivated := admin
	deactivated.IsActive = false
	for name, u := range map[string]usersbus.User{"demote": demoted, "deactivate": deactivated} {
		if _, err := s.Update(ctx, u, eventOf(usersbus.EventUserUpdated)); !errors.Is(err, usersbus.ErrLastAdmin) {
			t.Errorf("%s the last admin: %v, want ErrLastAdmin", name, err)
		}
	}
	if err := s.Delete(ctx, admin.ID, eventOf(usersbus.EventUserDeleted)); !errors.Is(err, usersbus.ErrLastAdmin) {
		t.Errorf("delete the last admin: %v, want ErrLastAdmin", err)
	}
	// Changing something else about the last admin is fine.
	renamed := admin
	renamed.Username = "root2"
	if _, err := s.Update(ctx, renamed, eventOf(usersbus.EventUserUpdated)); err != nil {
		t.Errorf("rename the last admin: %v", err)
	}
	// Non-admins are not concerned.
	if err := s.Delete(ctx, plain.ID, eventOf(usersbus.EventUserDeleted)); err != nil {
		t.Errorf("delete a non-admin: %v", err)
	}
}

// Admins demoting themselves at the same moment: exactly one must win, or
// both would see the other remain and the service would lose its last admin.
func TestConcurrentDemotionsKeepOneAdmin(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := context.Background()
	const admins = 6
	var all []usersbus.User
	for i := range admins {
		all = append(all, mustCreate(t, s, newUser(fmt.Sprintf("admin%d", i), usersbus.RoleAdmin)))
	}
	var wg sync.WaitGroup
	errs := make([]error, admins)
	start := make(chan struct{})
	for i, u := range all {
		wg.Go(func() {
			<-start
			demoted := u
			demoted.Roles = []string{}
			_, errs[i] = s.Update(ctx, demoted, eventOf(usersbus.EventUserUpdated))
		})
	}
	close(start)
	wg.Wait()
	var lastAdmin int
	for i, err := range errs {
		switch {
		case errors.Is(err, usersbus.ErrLastAdmin):
			lastAdmin++
		case err != nil:
			t.Errorf("admin %d: %v", i, err)
		}
	}
	var remaining int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM users WHERE 'admin' = ANY(roles)`).Scan(&remaining); err != nil {
		t.Fatal(err)
	}
	if lastAdmin != 1 || remaining != 1 {
		t.Errorf("%d refused as last admin, %d admins remain; want 1 and 1", lastAdmin, remaining)
	}
}

// The roles column round-trips as an empty array, never NULL.
func TestEmptyRoles(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	u := newUser("nobody")
	u.Roles = nil
	created := mustCreate(t, s, u)
	if created.Roles == nil || len(created.Roles) != 0 {
		t.Errorf("roles = %#v, want empty", created.Roles)
	}
	if diff := cmp.Diff([]string{}, created.Roles, cmpopts.EquateEmpty()); diff != "" {
		t.Error(diff)
	}
}
