-- +goose Up
CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text        NOT NULL,
    email         text        NOT NULL,
    password_hash text        NOT NULL,
    is_active     boolean     NOT NULL DEFAULT true,
    roles         text[]      NOT NULL DEFAULT '{}',
    version       bigint      NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- The business layer stores emails lower-cased; the constraint and
    -- index names are how the store tells which field clashed.
    CONSTRAINT users_email_key UNIQUE (email)
);

-- Usernames keep the case they were registered with, but Alice and alice
-- are one name.
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

-- +goose Down
DROP TABLE users;
