// Package idempotency makes a write safe to retry, after the IETF
// Idempotency-Key header (draft-ietf-httpapi-idempotency-key-header) and
// Stripe's model: a client sends a key it chose with a write, and the
// response of the first request with that key from that caller is stored
// in the write's own transaction. Every retry with the same key and the
// same request is answered that response again, marked
// Idempotent-Replayed: true, instead of writing a second time. So a
// client (or the ingress) may resend a POST whose answer it never got:
// the write happens at most once.
//
// A committed write always has its stored response and a rolled-back one
// has none (both commit or neither). Two requests with one key racing
// each other meet on the table's primary key: PostgreSQL makes the second
// wait until the first commits, which then loses its own transaction and
// is answered from the first's response. The same key with a different
// request is 422; a key whose first request holds it for longer than
// inFlightWait is 409; a malformed key is 400.
//
// Keys expire after a TTL (24 hours by default); Sweep deletes expired
// keys, and Run sweeps periodically as a loop its process owns.
package idempotency

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portico-mesh/portico/services/platform/contract"
)

// Header names of the draft and of replays.
const (
	// HeaderKey carries the client's key on a write; the ingress retries
	// the writes that carry it.
	HeaderKey = contract.HeaderIdempotencyKey
	// HeaderReplayed marks a response answered from a stored one.
	HeaderReplayed = "Idempotent-Replayed"
)

// DefaultTTL is how long a key is kept: a day, as the draft suggests and
// Stripe does, far longer than any client's retries.
const DefaultTTL = 24 * time.Hour

// Errors a request can end with. Serve turns them into problems.
var (
	// ErrKeyReused: the key was used for a different request (another
	// method, path or body).
	ErrKeyReused = errors.New("the idempotency key was used for a different request")
	// ErrInFlight: a request with the key is still running.
	ErrInFlight = errors.New("a request with this idempotency key is still being processed")
	// errRaced: a concurrent request with the key committed first; this
	// one's transaction must roll back and be answered from the stored
	// response.
	errRaced = errors.New("a concurrent request with the idempotency key committed first")
)

// Request identifies a write that carried a key.
type Request struct {
	// Principal is the caller the key belongs to (keys are per caller).
	Principal string
	Key       string
	// Fingerprint is a hash of the method, path and body.
	Fingerprint []byte
}

// Response is what a write answered, as stored and replayed.
type Response struct {
	Status int
	// Header holds the headers a replay must repeat (Location, ETag,
	// Content-Type ...), one value each.
	Header map[string]string
	Body   []byte
}

// Config configures a Store.
type Config struct {
	Pool *pgxpool.Pool
	// TTL is how long a key is kept; zero is DefaultTTL.
	TTL time.Duration
	// SweepEvery paces Run; zero is an hour.
	SweepEvery time.Duration
	// Log receives the sweeper's failures; nil discards them.
	Log *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Store keeps the responses of keyed writes in the idempotency_keys table
// (Migrations). It holds no state of its own beyond the pool: any number
// of instances of a service share one table.
type Store struct {
	pool       *pgxpool.Pool
	ttl        time.Duration
	sweepEvery time.Duration
	log        *slog.Logger
	now        func() time.Time
}

// NewStore returns a store over cfg.Pool.
func NewStore(cfg Config) *Store {
	s := &Store{pool: cfg.Pool, ttl: cfg.TTL, sweepEvery: cfg.SweepEvery, log: cfg.Log, now: cfg.Now}
	if s.ttl <= 0 {
		s.ttl = DefaultTTL
	}
	if s.sweepEvery <= 0 {
		s.sweepEvery = time.Hour
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// inFlightWait bounds how long a request waits for a concurrent one with
// the same key to finish (PostgreSQL's lock_timeout on the key's row):
// beyond it the request is answered 409 and may be retried later.
const inFlightWait = 2 * time.Second

// lockNotAvailable is SQLSTATE 55P03, raised when lock_timeout expires.
const lockNotAvailable = "55P03"

// Lookup returns the stored response of r's key, if it has one that has
// not expired; ErrKeyReused when the key was stored for another request.
func (s *Store) Lookup(ctx context.Context, r Request) (Response, bool, error) {
	var (
		fingerprint []byte
		resp        Response
	)
	err := s.pool.QueryRow(ctx,
		`SELECT fingerprint, status, headers, body FROM idempotency_keys
		  WHERE principal = $1 AND key = $2 AND expires_at > $3`,
		r.Principal, r.Key, s.now()).Scan(&fingerprint, &resp.Status, &resp.Header, &resp.Body)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Response{}, false, nil
	case err != nil:
		return Response{}, false, fmt.Errorf("idempotency: look up key: %w", err)
	case string(fingerprint) != string(r.Fingerprint):
		return Response{}, false, ErrKeyReused
	}
	return resp, true, nil
}

// keep stores resp as r's response in tx, the write's transaction. When a
// concurrent request with the key is still running, the insert waits for
// it (at most inFlightWait: ErrInFlight); when that one committed, keep
// returns errRaced, and the caller must roll back. An expired key is
// taken over.
func (s *Store) keep(ctx context.Context, tx pgx.Tx, r Request, resp Response) error {
	headers, err := json.Marshal(resp.Header)
	if err != nil {
		return fmt.Errorf("idempotency: encode headers: %w", err)
	}
	// SET LOCAL ends with the transaction; the key is the write's last
	// statement, so only its own wait is bounded.
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", inFlightWait.Milliseconds())); err != nil {
		return fmt.Errorf("idempotency: %w", err)
	}
	now := s.now()
	tag, err := tx.Exec(ctx,
		`INSERT INTO idempotency_keys (principal, key, fingerprint, status, headers, body, created_at, expires_at)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		 ON CONFLICT (principal, key) DO UPDATE
		    SET fingerprint = EXCLUDED.fingerprint, status = EXCLUDED.status, headers = EXCLUDED.headers,
		        body = EXCLUDED.body, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
		  WHERE idempotency_keys.expires_at <= EXCLUDED.created_at`,
		r.Principal, r.Key, r.Fingerprint, resp.Status, headers, resp.Body, now, now.Add(s.ttl))
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == lockNotAvailable:
		return ErrInFlight
	case err != nil:
		return fmt.Errorf("idempotency: store key: %w", err)
	case tag.RowsAffected() == 0:
		// The key is held by a live row: a concurrent request committed
		// it while this one waited.
		return errRaced
	}
	return nil
}

// Sweep deletes the expired keys and returns how many.
func (s *Store) Sweep(ctx context.Context) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE expires_at <= $1`, s.now())
	if err != nil {
		return 0, fmt.Errorf("idempotency: sweep: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Run sweeps expired keys every SweepEvery until ctx ends. A failed sweep
// is logged and tried again at the next tick: expired keys are never
// answered, so a late sweep only costs space.
func (s *Store) Run(ctx context.Context) error {
	tick := time.NewTicker(s.sweepEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		n, err := s.Sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.WarnContext(ctx, "idempotency keys not swept", "error", err.Error())
		case n > 0:
			s.log.InfoContext(ctx, "idempotency keys swept", "expired", n)
		}
	}
}
