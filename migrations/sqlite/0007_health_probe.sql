-- One row that `/healthz` rewrites (at most once a second) to prove that a write reaches the
-- database file: a `SELECT 1` answers even when the disk is full or another process holds the
-- write lock.
CREATE TABLE health_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
);

