// Package usersdb stores users in PostgreSQL, each change together with
// its event in the outbox.
package usersdb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portico-mesh/portico/services/platform/outbox"
	"github.com/portico-mesh/portico/services/platform/pgstore"
	"github.com/portico-mesh/portico/services/users/usersbus"
)

// Constraint names from migrations/users, by which a unique violation
// tells which member clashed.
const (
	constraintEmail    = "users_email_key"
	constraintUsername = "users_username_key"
)

// adminsLockID is the transaction-level advisory lock that serializes the
// changes taking the admin role away from an active admin, so that two
// admins demoting themselves at once cannot both see the other remain.
const adminsLockID int64 = 0x75736572_61646d // "useradm"

// Store implements usersbus.Storer.
type Store struct {
	pool *pgxpool.Pool
	// outbox stores the events, in the trace of the request.
	outbox *outbox.Writer
}

var _ usersbus.Storer = (*Store)(nil)

// NewStore returns a store over pool that writes its events with events.
func NewStore(pool *pgxpool.Pool, events *outbox.Writer) *Store {
	return &Store{pool: pool, outbox: events}
}

// dbUser is a row of the users table.
type dbUser struct {
	ID           int64
	Username     string
	Email        string
	PasswordHash string
	IsActive     bool
	Roles        []string
	Version      int64
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

const columns = `id, username, email, password_hash, is_active, roles, version, created_at, updated_at`

func scanUser(row pgx.Row) (dbUser, error) {
	var u dbUser
	err := row.Scan(&u.ID, &u.Username, &u.Email, &u.PasswordHash, &u.IsActive, &u.Roles, &u.Version, &u.CreatedAt, &u.UpdatedAt)
	return u, err
}

func toBusUser(u dbUser) usersbus.User {
	roles := u.Roles
	if roles == nil {
		roles = []string{}
	}
	return usersbus.User{
		ID:           u.ID,
		Username:     u.Username,
		Email:        u.Email,
		PasswordHash: usersbus.PasswordHash(u.PasswordHash),
		IsActive:     u.IsActive,
		Roles:        roles,
		Version:      u.Version,
		CreatedAt:    u.CreatedAt.UTC(),
		UpdatedAt:    u.UpdatedAt.UTC(),
	}
}

func toDBUser(u usersbus.User) dbUser {
	roles := u.Roles
	if roles == nil {
		roles = []string{}
	}
	return dbUser{
		ID:           u.ID,
		Username:     u.Username,
		Email:        u.Email,
		PasswordHash: string(u.PasswordHash),
		IsActive:     u.IsActive,
		Roles:        roles,
		Version:      u.Version,
	}
}

// Create implements usersbus.Storer.
func (s *Store) Create(ctx context.Context, u usersbus.User, ev usersbus.EventFunc) (usersbus.User, error) {
	in := toDBUser(u)
	var created usersbus.User
	err := pgstore.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		row, err := scanUser(tx.QueryRow(ctx,
			`INSERT INTO users (username, email, password_hash, is_active, roles)
			 VALUES ($1, $2, $3, $4, $5)
			 RETURNING `+columns,
			in.Username, in.Email, in.PasswordHash, in.IsActive, in.Roles))
		if err != nil {
			return mapError(err)
		}
		created = toBusUser(row)
		return s.enqueue(ctx, tx, created, ev)
	})
	if err != nil {
		return usersbus.User{}, fmt.Errorf("create user: %w", err)
	}
	return created, nil
}

// Update implements usersbus.Storer.
func (s *Store) Update(ctx context.Context, u usersbus.User, ev usersbus.EventFunc) (usersbus.User, error) {
	in := toDBUser(u)
	var updated usersbus.User
	err := pgstore.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		current, err := lockUser(ctx, tx, u.ID)
		if err != nil {
			return err
		}
		if current.Version != u.Version {
			return usersbus.ErrVersionChanged
		}
		if err := keepAnAdmin(ctx, tx, current, u.IsActiveAdmin()); err != nil {
			return err
		}
		row, err := scanUser(tx.QueryRow(ctx,
			`UPDATE users
			    SET username = $2, email = $3, password_hash = $4, is_active = $5, roles = $6,
			        version = version + 1, updated_at = now()
			  WHERE id = $1
			  RETURNING `+columns,
			in.ID, in.Username, in.Email, in.PasswordHash, in.IsActive, in.Roles))
		if err != nil {
			return mapError(err)
		}
		updated = toBusUser(row)
		return s.enqueue(ctx, tx, updated, ev)
	})
	if err != nil {
		return usersbus.User{}, fmt.Errorf("update user %d: %w", u.ID, err)
	}
	return updated, nil
}

// Delete implements usersbus.Storer.
func (s *Store) Delete(ctx context.Context, id int64, ev usersbus.EventFunc) error {
	err := pgstore.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		current, err := lockUser(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := keepAnAdmin(ctx, tx, current, false); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM users WHERE id = $1`, id); err != nil {
			return err
		}
		return s.enqueue(ctx, tx, current, ev)
	})
	if err != nil {
		return fmt.Errorf("delete user %d: %w", id, err)
	}
	return nil
}

// lockUser reads the user with id and locks its row until the end of tx.
func lockUser(ctx context.Context, tx pgx.Tx, id int64) (usersbus.User, error) {
	row, err := scanUser(tx.QueryRow(ctx, `SELECT `+columns+` FROM users WHERE id = $1 FOR UPDATE`, id))
	if err != nil {
		return usersbus.User{}, mapError(err)
	}
	return toBusUser(row), nil
}

// keepAnAdmin refuses a change that takes the last active admin's admin
// status away (role removed, deactivated or deleted). Such changes take an
// advisory lock first, so they are counted one after another: under READ
// COMMITTED the count, a new statement, sees every demotion committed
// before the lock was granted.
func keepAnAdmin(ctx context.Context, tx pgx.Tx, current usersbus.User, staysActiveAdmin bool) error {
	if !current.IsActiveAdmin() || staysActiveAdmin {
		return nil
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, adminsLockID); err != nil {
		return fmt.Errorf("lock admins: %w", err)
	}
	var others int64
	err := tx.QueryRow(ctx,
		`SELECT count(*) FROM users WHERE id <> $1 AND is_active AND $2 = ANY(roles)`,
		current.ID, usersbus.RoleAdmin).Scan(&others)
	if err != nil {
		return fmt.Errorf("count admins: %w", err)
	}
	if others == 0 {
		return usersbus.ErrLastAdmin
	}
	return nil
}

func (s *Store) enqueue(ctx context.Context, tx pgx.Tx, u usersbus.User, ev usersbus.EventFunc) error {
	envelope, err := ev(u)
	if err != nil {
		return err
	}
	return s.outbox.Enqueue(ctx, tx, envelope)
}

// QueryByID implements usersbus.Storer.
func (s *Store) QueryByID(ctx context.Context, id int64) (usersbus.User, error) {
	row, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM users WHERE id = $1`, id))
	if err != nil {
		return usersbus.User{}, fmt.Errorf("query user %d: %w", id, mapError(err))
	}
	return toBusUser(row), nil
}

// QueryByEmail implements usersbus.Storer. email must be normalized.
func (s *Store) QueryByEmail(ctx context.Context, email string) (usersbus.User, error) {
	row, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM users WHERE email = $1`, email))
	if err != nil {
		return usersbus.User{}, fmt.Errorf("query user by email: %w", mapError(err))
	}
	return toBusUser(row), nil
}

// Query implements usersbus.Storer: keyset pagination on the primary key.
func (s *Store) Query(ctx context.Context, afterID int64, limit int) ([]usersbus.User, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT `+columns+` FROM users WHERE id > $1 ORDER BY id LIMIT $2`, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("query users: %w", err)
	}
	users, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (usersbus.User, error) {
		u, err := scanUser(row)
		return toBusUser(u), err
	})
	if err != nil {
		return nil, fmt.Errorf("query users: %w", err)
	}
	return users, nil
}

// mapError turns database outcomes the business layer knows into its
// sentinels, keeping the original in the chain.
func mapError(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return usersbus.ErrNotFound
	}
	if constraint, ok := pgstore.UniqueViolation(err); ok {
		switch constraint {
		case constraintEmail:
			return fmt.Errorf("%w: %w", usersbus.ErrUniqueEmail, err)
		case constraintUsername:
			return fmt.Errorf("%w: %w", usersbus.ErrUniqueUsername, err)
		}
	}
	return err
}
