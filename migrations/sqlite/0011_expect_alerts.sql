-- The missed-purchase checker's alerts (`expect:` on a pocket.order step): one row per missed
-- window (ref = the window's start, ms) or per exchange whose cost is off (ref = its id),
-- written in the transaction that queues the alert, so each is raised exactly once.
CREATE TABLE expect_alerts (
    workflow  TEXT    NOT NULL,
    kind      TEXT    NOT NULL CHECK (kind IN ('missed_purchase', 'cost_mismatch')),
    ref       TEXT    NOT NULL,
    message   TEXT    NOT NULL,
    raised_at INTEGER NOT NULL,
    PRIMARY KEY (workflow, kind, ref)
);
