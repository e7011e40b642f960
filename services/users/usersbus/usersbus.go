// Package usersbus is the business layer of the Users service: accounts,
// their passwords and roles, who may change what, and the events every
// change emits.
package usersbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portico-mesh/portico/services/platform/events"
)

// Sentinel errors. The API classifies them into problems; the store maps
// database outcomes onto them.
var (
	ErrNotFound       = errors.New("user not found")
	ErrUniqueEmail    = errors.New("email already registered")
	ErrUniqueUsername = errors.New("username already taken")
	// ErrConflict: concurrent writers kept changing the user while an
	// update was re-applied.
	ErrConflict = errors.New("the user was changed concurrently; retry the request")
	// ErrLastAdmin guards against locking everyone out: the last active
	// admin can lose neither the role, nor the account's activity, nor the
	// account.
	ErrLastAdmin = errors.New("the last active admin cannot lose the admin role")
	// ErrInvalidCredentials is the one answer to every failed login, so that
	// a caller cannot tell an unknown email from a wrong password or a
	// deactivated account.
	ErrInvalidCredentials = errors.New("invalid email or password")
	// ErrInvalid wraps a rule broken by input the API should have rejected
	// already (its own validation names the members).
	ErrInvalid = errors.New("invalid user")
)

// ErrVersionChanged is returned by a Storer when the row no longer has the
// version the write was based on. The business layer retries or reports
// ErrConflict; it never reaches a client as such.
var ErrVersionChanged = errors.New("user version changed")

// User is an account as the business layer sees it.
type User struct {
	ID           int64
	Username     string
	Email        string // lower-cased
	PasswordHash PasswordHash
	IsActive     bool
	Roles        []string // sorted, no duplicates
	Version      int64    // incremented by every update
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// IsActiveAdmin reports whether u holds the admin role on an active account.
func (u User) IsActiveAdmin() bool { return u.IsActive && slices.Contains(u.Roles, RoleAdmin) }

// NewUser is a registration.
type NewUser struct {
	Username string
	Email    string
	Password string
}

// UpdateUser is a partial update: nil members are left as they are.
type UpdateUser struct {
	Username *string
	Email    *string
	IsActive *bool
	Password *string
	Roles    *[]string
}

// Page selects a slice of the users ordered by id.
type Page struct {
	AfterID int64 // 0 for the first page
	Limit   int
}

// EventFunc builds the event of a stored change; the store calls it with
// the stored row inside the change's transaction.
type EventFunc func(User) (events.Envelope, error)

// Storer is what the business layer needs from storage. Every write stores
// the change and the event ev builds for it atomically.
type Storer interface {
	// Create inserts u (ID, Version and times are assigned) and returns the
	// stored row. ErrUniqueEmail, ErrUniqueUsername.
	Create(ctx context.Context, u User, ev EventFunc) (User, error)
	// Update stores u over the row with u.ID, provided that row still has
	// u.Version; the stored version is incremented. ErrNotFound, ErrVersionChanged,
	// ErrUniqueEmail, ErrUniqueUsername, ErrLastAdmin.
	Update(ctx context.Context, u User, ev EventFunc) (User, error)
	// Delete removes the user with id. ErrNotFound, ErrLastAdmin.
	Delete(ctx context.Context, id int64, ev EventFunc) error
	QueryByID(ctx context.Context, id int64) (User, error)
	QueryByEmail(ctx context.Context, email string) (User, error)
	// Query returns up to limit users with ids above afterID, by id.
	Query(ctx context.Context, afterID int64, limit int) ([]User, error)
}

// Config configures a Business.
type Config struct {
	Log *slog.Logger
	// Now is the clock stamped on events; nil means time.Now.
	Now func() time.Time
}

// Business is the Users service's use cases.
type Business struct {
	store     Storer
	passwords *passwords
	log       *slog.Logger
	now       func() time.Time
}

// NewBusiness returns the use cases over storer.
func NewBusiness(storer Storer, cfg Config) (*Business, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pw, err := newPasswords()
	if err != nil {
		return nil, err
	}
	return &Business{store: storer, passwords: pw, log: cfg.Log, now: cfg.Now}, nil
}

// Register creates an active account without roles. Anyone may register.
func (b *Business) Register(ctx context.Context, nu NewUser) (User, error) {
	if err := checkNewUser(nu); err != nil {
		return User{}, err
	}
	hash, err := b.passwords.hash(ctx, nu.Password)
	if err != nil {
		return User{}, err
	}
	u := User{
		Username:     nu.Username,
		Email:        NormalizeEmail(nu.Email),
		PasswordHash: hash,
		IsActive:     true,
		Roles:        []string{},
	}
	return b.store.Create(ctx, u, b.createdEvent)
}

// Authenticate returns the active user with email and password, or
// ErrInvalidCredentials. It costs one password hash whatever the outcome,
// so response times do not tell which part was wrong.
func (b *Business) Authenticate(ctx context.Context, email, password string) (User, error) {
	// PostgreSQL text cannot hold NUL, so such an email names no account;
	// asking the store would only fail the query.
	u, err := User{}, ErrNotFound
	if !strings.ContainsRune(email, 0) {
		u, err = b.store.QueryByEmail(ctx, NormalizeEmail(email))
	}
	switch {
	case errors.Is(err, ErrNotFound):
		if err := b.passwords.burn(ctx, password); err != nil {
			return User{}, err
		}
		return User{}, ErrInvalidCredentials
	case err != nil:
		return User{}, err
	}
	ok, err := b.passwords.matches(ctx, password, u.PasswordHash)
	if err != nil {
		return User{}, err
	}
	if !ok || !u.IsActive {
		return User{}, ErrInvalidCredentials
	}
	return u, nil
}

// QueryByID returns a user to that user or an admin: an account's email
// and roles are its own (anyone may register, so "any authenticated
// caller" would be anyone).
func (b *Business) QueryByID(ctx context.Context, actor Actor, id int64) (User, error) {
	if err := actor.mayRead(id); err != nil {
		return User{}, err
	}
	return b.store.QueryByID(ctx, id)
}

// Query returns one page of users, and whether more follow: every user to
// an admin, the caller alone to anyone else.
func (b *Business) Query(ctx context.Context, actor Actor, page Page) (users []User, more bool, err error) {
	if err := actor.authenticated(); err != nil {
		return nil, false, err
	}
	if page.Limit < 1 || page.AfterID < 0 {
		return nil, false, fmt.Errorf("%w: page limit %d after %d", ErrInvalid, page.Limit, page.AfterID)
	}
	if !actor.IsAdmin() {
		if actor.UserID <= page.AfterID {
			return nil, false, nil
		}
		u, err := b.store.QueryByID(ctx, actor.UserID)
		if errors.Is(err, ErrNotFound) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		return []User{u}, false, nil
	}
	users, err = b.store.Query(ctx, page.AfterID, page.Limit+1)
	if err != nil {
		return nil, false, err
	}
	if len(users) > page.Limit {
		return users[:page.Limit], true, nil
	}
	return users, false, nil
}

// updateAttempts bounds how often an update is re-applied to a fresh read
// when another write got in between.
const updateAttempts = 3

// Update applies uu to the user with id on behalf of actor. A change that
// changes nothing is not stored and emits nothing.
func (b *Business) Update(ctx context.Context, actor Actor, id int64, uu UpdateUser) (User, error) {
	if err := actor.mayChange(id); err != nil {
		return User{}, err
	}
	if err := checkUpdate(uu); err != nil {
		return User{}, err
	}
	if err := actor.mayUpdate(uu); err != nil {
		return User{}, err
	}
	// Hash once, outside the retries and any transaction: it is the slow part.
	var hash PasswordHash
	if uu.Password != nil {
		var err error
		if hash, err = b.passwords.hash(ctx, *uu.Password); err != nil {
			return User{}, err
		}
	}
	for range updateAttempts {
		current, err := b.store.QueryByID(ctx, id)
		if err != nil {
			return User{}, err
		}
		if err := actor.mayApply(current, uu); err != nil {
			return User{}, err
		}
		next, changed := apply(current, uu, hash)
		if !changed {
			return current, nil
		}
		stored, err := b.store.Update(ctx, next, b.updatedEvent)
		if !errors.Is(err, ErrVersionChanged) {
			return stored, err
		}
	}
	return User{}, ErrConflict
}

// apply returns u with uu's members set and whether anything changed.
func apply(u User, uu UpdateUser, hash PasswordHash) (User, bool) {
	next := u
	next.Roles = slices.Clone(u.Roles)
	if uu.Username != nil {
		next.Username = *uu.Username
	}
	if uu.Email != nil {
		next.Email = NormalizeEmail(*uu.Email)
	}
	if uu.IsActive != nil {
		next.IsActive = *uu.IsActive
	}
	if uu.Roles != nil {
		next.Roles = NormalizeRoles(*uu.Roles)
	}
	changed := next.Username != u.Username || next.Email != u.Email ||
		next.IsActive != u.IsActive || !slices.Equal(next.Roles, u.Roles)
	if hash != "" {
		next.PasswordHash = hash
		changed = true
	}
	return next, changed
}

// Delete removes the user with id on behalf of actor.
func (b *Business) Delete(ctx context.Context, actor Actor, id int64) error {
	if err := actor.mayChange(id); err != nil {
		return err
	}
	return b.store.Delete(ctx, id, b.deletedEvent)
}

// BootstrapOutcome says what EnsureAdmin did.
type BootstrapOutcome int

// Outcomes of EnsureAdmin.
const (
	BootstrapUnchanged BootstrapOutcome = iota // the user existed and was an admin
	BootstrapCreated                           // a new admin account was created
	BootstrapGranted                           // an existing account was made admin
)

func (o BootstrapOutcome) String() string {
	switch o {
	case BootstrapCreated:
		return "created"
	case BootstrapGranted:
		return "granted"
	default:
		return "unchanged"
	}
}

// bootstrapAttempts bounds the races EnsureAdmin re-reads after: each lost
// race means another instance made progress, so a few always suffice.
const bootstrapAttempts = 5

// EnsureAdmin makes sure an admin account with nu's email exists: it creates
// one with nu's username and password, or grants the admin role to the
// account that already has the email (whose username and password are left
// alone). It is idempotent, and instances that run it at the same time
// agree through the unique email constraint and the version check: the
// loser of a race reads again and finds the winner's work.
func (b *Business) EnsureAdmin(ctx context.Context, nu NewUser) (User, BootstrapOutcome, error) {
	if err := checkNewUser(nu); err != nil {
		return User{}, BootstrapUnchanged, fmt.Errorf("bootstrap admin: %w", err)
	}
	email := NormalizeEmail(nu.Email)
	var hash PasswordHash
	for range bootstrapAttempts {
		u, err := b.store.QueryByEmail(ctx, email)
		switch {
		case err == nil && slices.Contains(u.Roles, RoleAdmin):
			return u, BootstrapUnchanged, nil
		case err == nil:
			next := u
			next.Roles = NormalizeRoles(append(slices.Clone(u.Roles), RoleAdmin))
			stored, err := b.store.Update(ctx, next, b.updatedEvent)
			if errors.Is(err, ErrVersionChanged) || errors.Is(err, ErrNotFound) {
				continue
			}
			return stored, BootstrapGranted, err
		case !errors.Is(err, ErrNotFound):
			return User{}, BootstrapUnchanged, err
		}
		if hash == "" {
			if hash, err = b.passwords.hash(ctx, nu.Password); err != nil {
				return User{}, BootstrapUnchanged, err
			}
		}
		created, err := b.store.Create(ctx, User{
			Username:     nu.Username,
			Email:        email,
			PasswordHash: hash,
			IsActive:     true,
			Roles:        []string{RoleAdmin},
		}, b.createdEvent)
		switch {
		case err == nil:
			return created, BootstrapCreated, nil
		case errors.Is(err, ErrUniqueEmail), errors.Is(err, ErrUniqueUsername):
			// Possibly another instance creating the same admin (PostgreSQL
			// may report either constraint first): read again. A username
			// held by a different email fails on the next pass for good.
			if errors.Is(err, ErrUniqueUsername) {
				if _, qerr := b.store.QueryByEmail(ctx, email); errors.Is(qerr, ErrNotFound) {
					return User{}, BootstrapUnchanged, fmt.Errorf("bootstrap admin: username %q belongs to another account: %w", nu.Username, err)
				}
			}
			continue
		default:
			return User{}, BootstrapUnchanged, err
		}
	}
	return User{}, BootstrapUnchanged, fmt.Errorf("bootstrap admin: still racing after %d attempts", bootstrapAttempts)
}

func checkNewUser(nu NewUser) error {
	var errs []error
	if err := CheckUsername(nu.Username); err != nil {
		errs = append(errs, fmt.Errorf("username %w", err))
	}
	if err := CheckEmail(nu.Email); err != nil {
		errs = append(errs, fmt.Errorf("email %w", err))
	}
	if err := CheckPassword(nu.Password); err != nil {
		errs = append(errs, fmt.Errorf("password %w", err))
	}
	return invalid(errs)
}

func checkUpdate(uu UpdateUser) error {
	var errs []error
	if uu.Username != nil {
		if err := CheckUsername(*uu.Username); err != nil {
			errs = append(errs, fmt.Errorf("username %w", err))
		}
	}
	if uu.Email != nil {
		if err := CheckEmail(*uu.Email); err != nil {
			errs = append(errs, fmt.Errorf("email %w", err))
		}
	}
	if uu.Password != nil {
		if err := CheckPassword(*uu.Password); err != nil {
			errs = append(errs, fmt.Errorf("password %w", err))
		}
	}
	if uu.Roles != nil {
		for _, i := range UnknownRoles(*uu.Roles) {
			errs = append(errs, fmt.Errorf("roles[%d] %q is not a known role", i, (*uu.Roles)[i]))
		}
	}
	return invalid(errs)
}

func invalid(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
}

// idString is the form of a user id in subjects and tokens.
func idString(id int64) string { return strconv.FormatInt(id, 10) }
