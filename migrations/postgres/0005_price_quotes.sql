-- The last BTC price fetched per source and currency, so runs within `max_age` share one quote
-- and a source that is briefly down does not fail a run that a recent quote can serve.
-- (Twin of migrations/sqlite/0005.)
CREATE TABLE price_quotes (
    source     TEXT   NOT NULL,
    currency   TEXT   NOT NULL,
    price      TEXT   NOT NULL,
    fetched_at BIGINT NOT NULL,
    PRIMARY KEY (source, currency)
);
