package usersbus

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// fakeStore is an in-memory Storer with a scripted version race: the first
// races Update calls each lose to a "concurrent writer" that stores its
// own change first, as the store's version check reports it.
type fakeStore struct {
	users  map[int64]User
	nextID int64
	races  int

	updates int
	events  []string
}

func newFakeStore(us ...User) *fakeStore {
	s := &fakeStore{users: map[int64]User{}, nextID: 100}
	for _, u := range us {
		s.users[u.ID] = u
	}
	return s
}

func (s *fakeStore) record(ev EventFunc, u User) error {
	env, err := ev(u)
	if err != nil {
		return err
	}
	s.events = append(s.events, env.Type)
	return nil
}

func (s *fakeStore) Create(_ context.Context, u User, ev EventFunc) (User, error) {
	for _, other := range s.users {
		if other.Email == u.Email {
			return User{}, ErrUniqueEmail
		}
	}
	s.nextID++
	u.ID, u.Version = s.nextID, 1
	if err := s.record(ev, u); err != nil {
		return User{}, err
	}
	s.users[u.ID] = u
	return u, nil
}

func (s *fakeStore) Update(_ context.Context, u User, ev EventFunc) (User, error) {
	s.updates++
	if s.races > 0 {
		s.races--
		other := s.users[u.ID]
		other.Version++
		s.users[u.ID] = other
	}
	current, ok := s.users[u.ID]
	switch {
	case !ok:
		return User{}, ErrNotFound
	case current.Version != u.Version:
		return User{}, ErrVersionChanged
	}
	u.Version++
	if err := s.record(ev, u); err != nil {
		return User{}, err
	}
	s.users[u.ID] = u
	return u, nil
}

func (s *fakeStore) Delete(_ context.Context, id int64, ev EventFunc) error {
	u, ok := s.users[id]
	if !ok {
		return ErrNotFound
	}
	delete(s.users, id)
	return s.record(ev, u)
}

func (s *fakeStore) QueryByID(_ context.Context, id int64) (User, error) {
	u, ok := s.users[id]
	if !ok {
		return User{}, ErrNotFound
	}
	return u, nil
}

func (s *fakeStore) QueryByEmail(_ context.Context, email string) (User, error) {
	for _, u := range s.users {
		if u.Email == email {
			return u, nil
		}
	}
	return User{}, ErrNotFound
}

func (s *fakeStore) Query(_ context.Context, afterID int64, limit int) ([]User, error) {
	var out []User
	for _, u := range s.users {
		if u.ID > afterID {
			out = append(out, u)
		}
	}
	slices.SortFunc(out, func(a, b User) int { return int(a.ID - b.ID) })
	return out[:min(limit, len(out))], nil
}

var _ Storer = (*fakeStore)(nil)

func newTestBusiness(t *testing.T, store Storer) *Business {
	t.Helper()
	b, err := NewBusiness(store, Config{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestUpdateRetriesALostRaceThenGivesUp(t *testing.T) {
	bob := User{ID: 7, Username: "bob", Email: "bob@x.io", IsActive: true, Roles: []string{}, Version: 1}
	name := "robert"
	tests := []struct {
		name      string
		races     int
		wantErr   error
		wantCalls int
	}{
		{name: "no race", races: 0, wantCalls: 1},
		{name: "lost once, applied to the fresh version", races: 1, wantCalls: 2},
		{name: "won on the last attempt", races: updateAttempts - 1, wantCalls: updateAttempts},
		{name: "lost every attempt", races: updateAttempts, wantErr: ErrConflict, wantCalls: updateAttempts},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newFakeStore(bob)
			store.races = tt.races
			got, err := newTestBusiness(t, store).Update(context.Background(), Actor{UserID: 7}, 7, UpdateUser{Username: &name})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Update error = %v, want %v", err, tt.wantErr)
			}
			if store.updates != tt.wantCalls {
				t.Errorf("%d store updates, want %d", store.updates, tt.wantCalls)
			}
			if tt.wantErr != nil {
				if len(store.events) != 0 || store.users[7].Username != "bob" {
					t.Errorf("a refused update changed the user (%+v) or emitted %v", store.users[7], store.events)
				}
				return
			}
			want := bob
			want.Username, want.Version = name, bob.Version+int64(tt.races)+1
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("updated user (-want +got):\n%s", diff)
			}
			if !cmp.Equal([]string{EventUserUpdated}, store.events) {
				t.Errorf("events %v, want one %s", store.events, EventUserUpdated)
			}
		})
	}
}

func TestEnsureAdmin(t *testing.T) {
	nu := NewUser{Username: "root", Email: "Root@X.io", Password: "long enough password"}
	member := User{ID: 3, Username: "frank", Email: "root@x.io", PasswordHash: "frank's", IsActive: true, Roles: []string{}, Version: 1}
	admin := member
	admin.Roles = []string{RoleAdmin}

	tests := []struct {
		name        string
		existing    []User
		races       int
		wantOutcome BootstrapOutcome
		wantEvents  []string
		want        User
	}{
		{
			name: "nobody yet: created", wantOutcome: BootstrapCreated, wantEvents: []string{EventUserCreated},
			want: User{ID: 101, Username: "root", Email: "root@x.io", IsActive: true, Roles: []string{RoleAdmin}, Version: 1},
		},
		{
			name: "an admin already", existing: []User{admin}, wantOutcome: BootstrapUnchanged,
			want: admin,
		},
		{
			// Frank keeps his name and password; only the role is granted.
			name: "an account without the role: granted", existing: []User{member},
			wantOutcome: BootstrapGranted, wantEvents: []string{EventUserUpdated},
			want: User{ID: 3, Username: "frank", Email: "root@x.io", PasswordHash: "frank's", IsActive: true, Roles: []string{RoleAdmin}, Version: 2},
		},
		{
			name: "a grant that loses a race reads again", existing: []User{member}, races: 2,
			wantOutcome: BootstrapGranted, wantEvents: []string{EventUserUpdated},
			want: User{ID: 3, Username: "frank", Email: "root@x.io", PasswordHash: "frank's", IsActive: true, Roles: []string{RoleAdmin}, Version: 4},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newFakeStore(tt.existing...)
			store.races = tt.races
			got, outcome, err := newTestBusiness(t, store).EnsureAdmin(context.Background(), nu)
			if err != nil {
				t.Fatal(err)
			}
			if outcome != tt.wantOutcome {
				t.Errorf("outcome %v, want %v", outcome, tt.wantOutcome)
			}
			// A created admin's hash is random; that it verifies is the
			// HTTP tests' business.
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(User{}, "PasswordHash")); diff != "" {
				t.Errorf("admin (-want +got):\n%s", diff)
			}
			if tt.wantOutcome == BootstrapCreated && got.PasswordHash == "" {
				t.Error("created without a password hash")
			}
			if diff := cmp.Diff(tt.wantEvents, store.events); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReadsAreTheAccountsOwn: a user reads and lists only their own
// account, an admin every account; another user's is ErrForbidden before
// it is looked up, so it says nothing about whether the account exists.
func TestReadsAreTheAccountsOwn(t *testing.T) {
	alice := User{ID: 7, Username: "alice", Email: "alice@x.io", IsActive: true, Roles: []string{}, Version: 1}
	bob := User{ID: 8, Username: "bob", Email: "bob@x.io", IsActive: true, Roles: []string{}, Version: 1}
	b := newTestBusiness(t, newFakeStore(alice, bob))
	ctx := context.Background()
	asAlice, asAdmin := Actor{UserID: 7}, Actor{UserID: 1, Roles: []string{RoleAdmin}}

	if u, err := b.QueryByID(ctx, asAlice, 7); err != nil || u.ID != 7 {
		t.Errorf("alice reads herself: %+v, %v", u, err)
	}
	for _, id := range []int64{8, 999} {
		if _, err := b.QueryByID(ctx, asAlice, id); !errors.Is(err, ErrForbidden) {
			t.Errorf("alice reads user %d: %v, want ErrForbidden", id, err)
		}
	}
	if u, err := b.QueryByID(ctx, asAdmin, 8); err != nil || u.ID != 8 {
		t.Errorf("an admin reads bob: %+v, %v", u, err)
	}
	for _, tt := range []struct {
		actor   Actor
		afterID int64
		want    []int64
	}{
		{asAlice, 0, []int64{7}},
		{asAlice, 7, nil},
		{asAdmin, 0, []int64{7, 8}},
	} {
		users, more, err := b.Query(ctx, tt.actor, Page{AfterID: tt.afterID, Limit: 10})
		var ids []int64
		for _, u := range users {
			ids = append(ids, u.ID)
		}
		if err != nil || more || !slices.Equal(ids, tt.want) {
			t.Errorf("%+v lists after %d: %v (more %v, %v), want %v", tt.actor, tt.afterID, ids, more, err, tt.want)
		}
	}
}
