-- Several daemons on one database: each registers itself here and beats every few seconds, so
-- `/healthz` and `satflow status` can show the instances that are alive.
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    listen TEXT NOT NULL,
    version TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    stopped_at BIGINT
);

CREATE INDEX instances_heartbeat ON instances (heartbeat_at);

-- Jobs that must run on one instance at a time (the reconciler, the withdrawal follower): the
-- holder renews its lease while it works; another instance takes over once it has expired.
CREATE TABLE job_leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL
);
