-- The idempotency keys' own migration line (services/platform/idempotency
-- owns the table; pgstore applies this folder with its own version table,
-- goose_db_version_idempotency, beside each service's line).
-- +goose Up
-- One row per (caller, key): the response a write answered, stored in the
-- write's own transaction, so that a committed write always has its
-- response here and a rolled-back one has none. A retry with the same key
-- is answered from here instead of writing again.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    -- principal scopes a key to its caller (the verified subject; empty
    -- for anonymous callers): two callers never see each other's keys.
    principal   text        NOT NULL,
    key         text        NOT NULL,
    -- fingerprint is a hash of the method, path and body: the same key
    -- with another request is refused, not answered with this response.
    fingerprint bytea       NOT NULL,
    status      integer     NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    body        bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (principal, key)
);

-- The sweeper deletes by expiry.
CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at ON idempotency_keys (expires_at);

-- +goose Down
DROP TABLE IF EXISTS idempotency_keys;
