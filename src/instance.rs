//! This daemon as one of several on one database: its instance id (the owner written on every
//! lease it takes), its registration and heartbeat in the instances table, and the job leases
//! that keep the reconciler and the withdrawal follower on one instance at a time.
//!
//! It must never let a failed heartbeat or lease question stop the daemon: an instance that
//! cannot reach the database simply does not hold jobs until it can again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::logs;
use crate::store::{InstanceRow, Store};

/// How often an instance marks itself alive.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// An instance whose last heartbeat is older than this is not shown as alive.
pub const ALIVE_WITHIN: chrono::Duration = chrono::Duration::seconds(10);

/// The job lease of the reconciler (Pocket read-backs and payout confirmations).
pub const RECONCILER: &str = "reconciler";

/// The job lease of the withdrawal follower.
pub const WITHDRAWALS: &str = "withdrawal follower";

/// How long an instance keeps a workflow's order (see `order_keeper`) if it dies mid-run; a run
/// that ends hands the lease back at once.
pub const KEEPER_LEASE: chrono::Duration = chrono::Duration::minutes(2);

/// The job lease of the order keeper of `workflow` (its `pocket.order` step).
pub fn order_keeper(workflow: &str) -> String {
    format!("order keeper {workflow}")
}

/// This machine's name, for telling instances apart in `status` (`localhost` when unknown).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A new instance id: host, process and start time, so two instances never share one (a
/// restarted process gets a new id, and so never mistakes its predecessor's leases for its own).
pub fn new_id(host: &str, clock: &dyn Clock) -> String {
    format!(
        "{host}-{}-{}",
        std::process::id(),
        clock.now().timestamp_millis()
    )
}

/// The row this daemon registers.
pub fn row(id: &str, host: &str, listen: std::net::SocketAddr, clock: &dyn Clock) -> InstanceRow {
    let now = clock.now();
    InstanceRow {
        id: id.to_string(),
        host: host.to_string(),
        pid: i64::from(std::process::id()),
        listen: listen.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: now,
        heartbeat_at: now,
    }
}

/// Keeps `instance` registered and beating until `shutdown`, then records that it stopped and
/// hands back its job leases.
pub async fn heartbeat(
    store: Store,
    instance: InstanceRow,
    clock: Arc<dyn Clock>,
    mut shutdown: watch::Receiver<bool>,
) {
    const WHAT: &str = "instance heartbeat";
    let mut registered = false;
    while !*shutdown.borrow() {
        let now = clock.now();
        let result = if registered {
            store.beat_instance(&instance.id, now).await
        } else {
            store.register_instance(&instance, now).await.map(|()| true)
        };
        match result {
            Ok(beat) => {
                registered = beat;
                logs::recovered(WHAT);
            }
            Err(err) => logs::store_error(&store, WHAT, &err),
        }
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
            _ = shutdown.changed() => {}
        }
    }
    if let Err(err) = store.instance_stopped(&instance.id, clock.now()).await {
        tracing::warn!(%err, "cannot record that this instance stopped; its heartbeat will age out");
    }
}

/// Asks for job leases on behalf of this instance.
#[derive(Clone)]
pub struct Jobs {
    pub store: Store,
    pub owner: String,
    pub clock: Arc<dyn Clock>,
    /// The shortest lease taken (the engine's `lease`); a job that runs every `interval` holds
    /// its lease for at least two intervals, so it stays put between its passes.
    pub lease: chrono::Duration,
}

impl Jobs {
    /// Whether this instance holds (took or renewed) job `name`'s lease for its next pass, which
    /// comes after `interval`. False when another instance holds it, or the database could not
    /// answer (then nobody here does the job until it can).
    pub async fn hold(&self, name: &str, interval: Duration) -> bool {
        let interval = chrono::Duration::from_std(interval.saturating_mul(2))
            .unwrap_or(chrono::Duration::hours(1));
        let lease = self.lease.max(interval);
        match self
            .store
            .hold_job(name, &self.owner, self.clock.now(), lease)
            .await
        {
            Ok(held) => held,
            Err(err) => {
                logs::store_error(&self.store, "job lease", &err);
                false
            }
        }
    }
}

/// An instance as `/healthz` and `status --json` show it.
pub fn json(row: &InstanceRow) -> serde_json::Value {
    serde_json::json!({
        "id": row.id,
        "host": row.host,
        "pid": row.pid,
        "listen": row.listen,
        "version": row.version,
        "started_at": row.started_at.to_rfc3339(),
        "heartbeat_at": row.heartbeat_at.to_rfc3339(),
    })
}
