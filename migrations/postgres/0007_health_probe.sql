-- One row that `/healthz` rewrites (at most once a second) to prove that a write reaches the
-- database: a `SELECT 1` answers even when the disk is full or another session holds the
-- write lock. (Twin of migrations/sqlite/0007.)
CREATE TABLE health_probe (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    at BIGINT NOT NULL
);
