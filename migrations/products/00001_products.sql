-- +goose Up
CREATE TABLE products (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text          NOT NULL,
    description    text          NOT NULL DEFAULT '',
    -- Money is exact: never a float.
    price          numeric(12,2) NOT NULL CHECK (price >= 0),
    stock_quantity integer       NOT NULL CHECK (stock_quantity >= 0),
    -- Incremented by every update; the ETag is derived from it.
    version        bigint        NOT NULL DEFAULT 1,
    created_at     timestamptz   NOT NULL DEFAULT now(),
    updated_at     timestamptz   NOT NULL DEFAULT now()
);

CREATE INDEX products_name_lower_idx ON products (lower(name));

-- +goose Down
DROP TABLE products;
