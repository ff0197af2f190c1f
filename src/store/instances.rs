//! Several daemons on one database: the instances table (who is running, where, and when each
//! last beat) and the job leases that keep a job (the reconciler, the withdrawal follower) on
//! one instance at a time.
//!
//! A job lease is taken with one statement (`INSERT … ON CONFLICT … DO UPDATE … WHERE`), so two
//! instances racing for it on either backend get one winner without a lock held across work.
//! Nothing here may decide that an instance is dead from anything but its heartbeat's age.

use super::db;
use chrono::{DateTime, Duration, Utc};

use super::{Store, StoreError, from_millis};

/// One daemon, as it registered itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRow {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub listen: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
}

/// How long the rows of instances that stopped or died are kept, for `status` to show what ran.
const KEEP_GONE: Duration = Duration::days(7);

impl Store {
    /// Registers this daemon (or registers it again after the row was pruned); also forgets
    /// instances gone for longer than `KEEP_GONE`.
    pub async fn register_instance(
        &self,
        instance: &InstanceRow,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        db::query("DELETE FROM instances WHERE heartbeat_at < $1")
            .bind((now - KEEP_GONE).timestamp_millis())
            .execute(&mut tx)
            .await?;
        db::query(
            "INSERT INTO instances (id, host, pid, listen, version, started_at, heartbeat_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, stopped_at = NULL",
        )
        .bind(&instance.id)
        .bind(&instance.host)
        .bind(instance.pid)
        .bind(&instance.listen)
        .bind(&instance.version)
        .bind(instance.started_at.timestamp_millis())
        .bind(now.timestamp_millis())
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks `id` alive at `now`; false when its row is gone (pruned by someone who took it for
    /// dead): the caller registers again.
    pub async fn beat_instance(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let n = db::query("UPDATE instances SET heartbeat_at = $1 WHERE id = $2")
            .bind(now.timestamp_millis())
            .bind(id)
            .execute(&mut tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Records that `id` stopped on purpose, and hands back the job leases it held so another
    /// instance need not wait for them to expire.
    pub async fn instance_stopped(&self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        db::query("UPDATE instances SET stopped_at = $1 WHERE id = $2")
            .bind(now.timestamp_millis())
            .bind(id)
            .execute(&mut tx)
            .await?;
        db::query("DELETE FROM job_leases WHERE owner = $1")
            .bind(id)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The instances that beat within `within` of `now` and did not stop, oldest first.
    pub async fn live_instances(
        &self,
        now: DateTime<Utc>,
        within: Duration,
    ) -> Result<Vec<InstanceRow>, StoreError> {
        let rows = db::query(
            "SELECT id, host, pid, listen, version, started_at, heartbeat_at FROM instances
             WHERE stopped_at IS NULL AND heartbeat_at >= $1 ORDER BY started_at, id",
        )
        .bind((now - within).timestamp_millis())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(InstanceRow {
                    id: r.try_get("id")?,
                    host: r.try_get("host")?,
                    pid: r.try_get("pid")?,
                    listen: r.try_get("listen")?,
                    version: r.try_get("version")?,
                    started_at: from_millis(r.try_get("started_at")?),
                    heartbeat_at: from_millis(r.try_get("heartbeat_at")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Takes or renews the lease on job `name` for `owner` until `now + lease`. True when
    /// `owner` holds it now; false while another owner's lease has not expired.
    pub async fn hold_job(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let holder: Option<String> = db::query_scalar(
            "INSERT INTO job_leases (name, owner, lease_until, acquired_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,
                 lease_until = excluded.lease_until,
                 acquired_at = CASE WHEN job_leases.owner = excluded.owner
                                    THEN job_leases.acquired_at ELSE excluded.acquired_at END
             WHERE job_leases.owner = excluded.owner OR job_leases.lease_until < excluded.acquired_at
             RETURNING owner",
        )
        .bind(name)
        .bind(owner)
        .bind((now + lease).timestamp_millis())
        .bind(now.timestamp_millis())
        .fetch_optional(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(holder.as_deref() == Some(owner))
    }

    /// Hands back `owner`'s lease on job `name` (when it is done before the lease ends).
    pub async fn release_job(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        db::query("DELETE FROM job_leases WHERE name = $1 AND owner = $2")
            .bind(name)
            .bind(owner)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Who holds job `name` now, if anyone's lease is current.
    pub async fn job_holder(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        Ok(
            db::query_scalar("SELECT owner FROM job_leases WHERE name = $1 AND lease_until >= $2")
                .bind(name)
                .bind(now.timestamp_millis())
                .fetch_optional(self.pool())
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, now: DateTime<Utc>) -> InstanceRow {
        InstanceRow {
            id: id.into(),
            host: "h".into(),
            pid: 7,
            listen: "127.0.0.1:1".into(),
            version: "0".into(),
            started_at: now,
            heartbeat_at: now,
        }
    }

    #[tokio::test]
    async fn an_instance_that_stops_beating_or_stops_is_no_longer_alive() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db")).await.unwrap();
        let t0 = crate::clock::system_now();
        let within = Duration::seconds(10);
        store
            .register_instance(&instance("a", t0), t0)
            .await
            .unwrap();
        store
            .register_instance(&instance("b", t0), t0)
            .await
            .unwrap();
        let later = t0 + Duration::seconds(8);
        assert!(store.beat_instance("a", later).await.unwrap());
        let ids = |rows: Vec<InstanceRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
        let at = t0 + Duration::seconds(12);
        assert_eq!(ids(store.live_instances(at, within).await.unwrap()), ["a"]);
        store.instance_stopped("a", at).await.unwrap();
        assert!(store.live_instances(at, within).await.unwrap().is_empty());
        // A row pruned as long gone is noticed by its next beat.
        let much_later = t0 + Duration::days(8);
        store
            .register_instance(&instance("c", much_later), much_later)
            .await
            .unwrap();
        assert!(!store.beat_instance("b", much_later).await.unwrap());
    }

    #[tokio::test]
    async fn a_job_lease_has_one_holder_until_it_expires_or_is_handed_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let a = Store::open_sqlite(&path).await.unwrap();
        let b = Store::open_sqlite(&path).await.unwrap();
        let t0 = crate::clock::system_now();
        let lease = Duration::seconds(5);
        // Twenty attempts at once from two stores: exactly one owner wins.
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let owner = if i % 2 == 0 { "a" } else { "b" };
            tasks.push(tokio::spawn(async move {
                store
                    .hold_job("reconciler", owner, t0, lease)
                    .await
                    .map(|held| held.then_some(owner))
            }));
        }
        let mut winners = std::collections::BTreeSet::new();
        for t in tasks {
            winners.extend(t.await.unwrap().unwrap());
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        let winner = *winners.first().unwrap();
        let loser = if winner == "a" { "b" } else { "a" };
        let t1 = t0 + Duration::seconds(4);
        assert!(!a.hold_job("reconciler", loser, t1, lease).await.unwrap());
        assert!(a.hold_job("reconciler", winner, t1, lease).await.unwrap());
        // Renewed at t1: still the winner's at t1 + 4 s, the loser's after it expired.
        assert!(
            !a.hold_job("reconciler", loser, t1 + Duration::seconds(4), lease)
                .await
                .unwrap()
        );
        let t2 = t1 + Duration::seconds(6);
        assert!(a.hold_job("reconciler", loser, t2, lease).await.unwrap());
        assert_eq!(
            a.job_holder("reconciler", t2).await.unwrap().as_deref(),
            Some(loser)
        );
        assert!(!a.hold_job("reconciler", winner, t2, lease).await.unwrap());
        // Another job is independent; a stopping instance hands its leases back.
        assert!(a.hold_job("withdrawals", winner, t2, lease).await.unwrap());
        a.instance_stopped(loser, t2).await.unwrap();
        assert!(a.hold_job("reconciler", winner, t2, lease).await.unwrap());
        // A job done early is handed back: the other owner need not wait.
        a.release_job("reconciler", loser).await.unwrap();
        assert!(!b.hold_job("reconciler", loser, t2, lease).await.unwrap());
        a.release_job("reconciler", winner).await.unwrap();
        assert!(b.hold_job("reconciler", loser, t2, lease).await.unwrap());
    }
}
