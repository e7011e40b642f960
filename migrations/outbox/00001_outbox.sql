-- The transactional outbox's own migration line (services/platform/outbox
-- owns the table; pgstore applies this folder with its own version table,
-- goose_db_version_outbox, beside each service's line).
--
-- Until the outbox had a line of its own, each service created this table
-- in its migration 2. Databases migrated then already hold it, so every
-- statement here leaves an existing outbox as it is: the first run of this
-- line on such a database only records version 1.
-- +goose Up
-- Transactional outbox: an event row is written in the same transaction as
-- the change it describes, and a relay publishes it to RabbitMQ afterwards.
CREATE TABLE IF NOT EXISTS outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   uuid        NOT NULL UNIQUE,
    event_type text        NOT NULL,
    payload    jsonb       NOT NULL,
    headers    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Wakes the relay as soon as a transaction with events commits, so it does
-- not have to poll tightly.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE OR REPLACE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- +goose Down
DROP TABLE IF EXISTS outbox;
DROP FUNCTION IF EXISTS outbox_notify();
