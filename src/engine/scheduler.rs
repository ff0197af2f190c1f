//! The scheduler: turns a workflow's fire times into fires recorded in the database, each once,
//! following the workflow's `catch_up` policy for fires missed while satflow was down.
//!
//! A fire is a row keyed `(workflow, scheduled_for)` and inserted with "do nothing on conflict",
//! so two daemons, a restart or a clock stepping back never run a fire twice. The decision what
//! to run is a pure function of the schedule, the last recorded fire and the time: the tests
//! drive it with a moved clock. It never runs a workflow itself; it queues runs for the runner.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::{DateTime, Duration, Utc};

pub use crate::store::{Fire, FireAction, WorkflowFires};
use crate::store::{Store, StoreError};
use crate::workflow::{CatchUp, Schedule, Workflow};

/// How late a fire may be noticed and still count as on time rather than missed.
pub const GRACE: Duration = Duration::minutes(2);

/// With `catch_up: all`, at most this many missed fires are run; older ones are skipped.
pub const CATCH_UP_CAP: usize = 100;

/// How many past fire times are looked at, at most, after a long outage.
const SCAN_LIMIT: usize = 100_000;

/// What to do about every fire of `schedule` after `after` up to `now` inclusive.
pub fn decide(
    schedule: &Schedule,
    after: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, FireAction)> {
    let fires = schedule.fires_until(after, now, SCAN_LIMIT);
    let missed = fires.iter().filter(|t| now - **t > GRACE).count();
    fires
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let action = if i >= missed {
                FireAction::Run
            } else {
                match schedule.catch_up {
                    CatchUp::Skip => FireAction::Skip,
                    CatchUp::Once if i + 1 == missed => FireAction::Run,
                    CatchUp::Once => FireAction::Skip,
                    CatchUp::All if missed - i <= CATCH_UP_CAP => FireAction::Run,
                    CatchUp::All => FireAction::Skip,
                }
            };
            (*t, action)
        })
        .collect()
}

/// Records the due fires of every scheduled workflow and queues their runs.
///
/// It keeps, per workflow, the time up to which fires have been decided, and a queue of next
/// fire times, so a pass only looks at the workflows that are due: 10,000 workflows cost no
/// more per pass than the few that fire.
pub struct Scheduler {
    entries: Vec<Entry>,
    queue: BinaryHeap<Reverse<(DateTime<Utc>, usize)>>,
}

struct Entry {
    workflow: String,
    schedule: Schedule,
    /// Fires up to this time (inclusive) have been decided.
    after: DateTime<Utc>,
}

impl Scheduler {
    /// Reads where each scheduled workflow left off. A workflow seen for the first time starts
    /// at `now`: it does not catch up on fires from before it existed.
    pub async fn load<W: std::borrow::Borrow<Workflow>>(
        store: &Store,
        workflows: &[W],
        now: DateTime<Utc>,
    ) -> Result<Self, StoreError> {
        let scheduled: Vec<(&Workflow, &Schedule)> = workflows
            .iter()
            .map(|w| w.borrow())
            .filter_map(|w| Some((w, w.schedule.as_ref()?)))
            .collect();
        let names: Vec<&str> = scheduled.iter().map(|(w, _)| w.name.as_str()).collect();
        let anchors = store.schedule_anchors(&names, now).await?;
        let last = store.last_fires().await?;
        let mut scheduler = Scheduler {
            entries: Vec::with_capacity(scheduled.len()),
            queue: BinaryHeap::with_capacity(scheduled.len()),
        };
        for (i, (w, schedule)) in scheduled.into_iter().enumerate() {
            let anchor = anchors.get(&w.name).copied().unwrap_or(now);
            let after = last.get(&w.name).map_or(anchor, |l| (*l).max(anchor));
            if let Some(next) = schedule.next_after(after) {
                scheduler.queue.push(Reverse((next.to_utc(), i)));
            }
            scheduler.entries.push(Entry {
                workflow: w.name.clone(),
                schedule: schedule.clone(),
                after,
            });
        }
        Ok(scheduler)
    }

    /// One pass at `now`: records every due fire in one transaction and returns the ids of the
    /// runs it queued.
    pub async fn tick(
        &mut self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        let mut due = Vec::new();
        while let Some(Reverse((at, i))) = self.queue.peek().copied()
            && at <= now
        {
            self.queue.pop();
            let entry = &self.entries[i];
            due.push((i, decide(&entry.schedule, entry.after, now)));
        }
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let batch: Vec<WorkflowFires<'_>> = due
            .iter()
            .map(|(i, fires)| (self.entries[*i].workflow.as_str(), fires.as_slice()))
            .collect();
        let queued = match store.record_fires(&batch, now).await {
            Ok(queued) => queued,
            Err(err) => {
                // Nothing was recorded: put the due workflows back to be tried on the next pass.
                for (i, _) in &due {
                    if let Some(next) = self.entries[*i].schedule.next_after(self.entries[*i].after)
                    {
                        self.queue.push(Reverse((next.to_utc(), *i)));
                    }
                }
                return Err(err);
            }
        };
        for (i, fires) in due {
            for (at, _) in fires.iter().filter(|(_, a)| *a == FireAction::Run) {
                let late = (now - *at).to_std().unwrap_or_default();
                crate::http::metrics::observe(
                    "satflow_fire_lateness_seconds",
                    &[],
                    late.as_secs_f64(),
                );
            }
            let entry = &mut self.entries[i];
            if let Some((last, _)) = fires.last() {
                entry.after = *last;
            }
            if let Some(next) = entry.schedule.next_after(entry.after) {
                self.queue.push(Reverse((next.to_utc(), i)));
            }
        }
        Ok(queued)
    }

    /// When the next fire of any workflow is due, for the daemon's sleep.
    pub fn next_fire(&self) -> Option<DateTime<Utc>> {
        self.queue.peek().map(|Reverse((at, _))| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::schedule::parse_timezone;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn weekly(catch_up: CatchUp) -> Schedule {
        Schedule::new(
            "0 9 * * MON",
            parse_timezone("Europe/Zurich").unwrap(),
            catch_up,
        )
        .unwrap()
    }

    fn runs(decided: &[(DateTime<Utc>, FireAction)]) -> Vec<String> {
        decided
            .iter()
            .filter(|(_, a)| *a == FireAction::Run)
            .map(|(t, _)| t.to_rfc3339())
            .collect()
    }

    #[test]
    fn an_on_time_fire_runs_whatever_the_policy() {
        for policy in [CatchUp::Skip, CatchUp::Once, CatchUp::All] {
            let d = decide(
                &weekly(policy),
                at("2027-03-29T06:59:00Z"),
                at("2027-03-29T07:00:30Z"),
            );
            assert_eq!(runs(&d), ["2027-03-29T07:00:00+00:00"], "{policy:?}");
        }
    }

    #[test]
    fn after_a_three_week_outage_each_policy_catches_up_as_documented() {
        // Down from Sunday 7 March to Friday 26 March 2027: three Mondays missed.
        let after = at("2027-03-07T12:00:00Z");
        let now = at("2027-03-26T12:00:00Z");
        let skip = decide(&weekly(CatchUp::Skip), after, now);
        assert_eq!(skip.len(), 3);
        assert!(runs(&skip).is_empty());
        let once = decide(&weekly(CatchUp::Once), after, now);
        assert_eq!(runs(&once), ["2027-03-22T08:00:00+00:00"]);
        let all = decide(&weekly(CatchUp::All), after, now);
        assert_eq!(
            runs(&all),
            [
                "2027-03-08T08:00:00+00:00",
                "2027-03-15T08:00:00+00:00",
                "2027-03-22T08:00:00+00:00"
            ]
        );
    }

    #[test]
    fn catch_up_all_is_capped() {
        let minutely = Schedule::new(
            "* * * * *",
            crate::workflow::zone::Zone::utc(),
            CatchUp::All,
        )
        .unwrap();
        let d = decide(
            &minutely,
            at("2027-01-01T00:00:00Z"),
            at("2027-01-01T10:00:00Z"),
        );
        assert_eq!(d.len(), 600);
        // 09:58, 09:59 and 10:00 are within the grace: on time, not caught up.
        assert_eq!(runs(&d).len(), CATCH_UP_CAP + 3);
    }

    mod with_store {
        use super::*;
        use crate::clock::{Clock, ManualClock};
        use std::path::PathBuf;

        fn workflow(name: &str, schedule: Schedule) -> Workflow {
            Workflow {
                name: name.into(),
                path: PathBuf::from(format!("{name}.yaml")),
                schedule: Some(schedule),
                events: Vec::new(),
                exchanges: Default::default(),
                steps: Vec::new(),
            }
        }

        async fn run_times(store: &Store) -> Vec<String> {
            let mut keys: Vec<String> = store
                .recent_runs(10_000)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.trigger_key)
                .collect();
            keys.sort();
            keys
        }

        #[tokio::test]
        async fn two_daemons_and_a_clock_stepping_back_fire_each_fire_once() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("satflow.db");
            let (a, b) = (
                Store::open_sqlite(&path).await.unwrap(),
                Store::open_sqlite(&path).await.unwrap(),
            );
            let zurich = parse_timezone("Europe/Zurich").unwrap();
            let hourly = vec![workflow(
                "hourly",
                Schedule::new("0 * * * *", zurich, CatchUp::Skip).unwrap(),
            )];
            let clock = ManualClock::new(at("2027-03-27T23:30:00Z"));
            let mut sa = Scheduler::load(&a, &hourly, clock.now()).await.unwrap();
            let mut sb = Scheduler::load(&b, &hourly, clock.now()).await.unwrap();
            sa.tick(&a, clock.now()).await.unwrap();
            // Both daemons tick every 30 s through the night local time jumps from 02:00 to 03:00;
            // at 00:20Z the clock also steps back 45 minutes.
            for step in 0..400 {
                clock.advance(Duration::seconds(30));
                if step == 100 {
                    clock.advance(Duration::minutes(-45));
                }
                let now = clock.now();
                let (ra, rb) = tokio::join!(sa.tick(&a, now), sb.tick(&b, now));
                ra.unwrap();
                rb.unwrap();
            }
            assert_eq!(
                run_times(&a).await,
                [
                    "2027-03-28T00:00:00Z",
                    "2027-03-28T01:00:00Z",
                    "2027-03-28T02:00:00Z"
                ],
                "one run per real hour, none twice"
            );
        }

        #[tokio::test]
        async fn a_daily_zurich_run_follows_local_time_through_the_spring_change() {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open_sqlite(&dir.path().join("db")).await.unwrap();
            let zurich = parse_timezone("Europe/Zurich").unwrap();
            let daily = vec![workflow(
                "daily",
                Schedule::new("0 9 * * *", zurich, CatchUp::Once).unwrap(),
            )];
            let clock = ManualClock::new(at("2027-03-26T12:00:00Z"));
            let mut scheduler = Scheduler::load(&store, &daily, clock.now()).await.unwrap();
            for _ in 0..(4 * 24 * 2) {
                clock.advance(Duration::minutes(30));
                scheduler.tick(&store, clock.now()).await.unwrap();
            }
            assert_eq!(
                run_times(&store).await,
                [
                    "2027-03-27T08:00:00Z",
                    "2027-03-28T07:00:00Z",
                    "2027-03-29T07:00:00Z",
                    "2027-03-30T07:00:00Z"
                ]
            );
        }

        #[tokio::test]
        async fn after_three_weeks_down_once_runs_the_latest_missed_fire_and_a_new_workflow_does_not_catch_up()
         {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open_sqlite(&dir.path().join("db")).await.unwrap();
            let clock = ManualClock::new(at("2027-03-07T12:00:00Z"));
            let weekly_wf = vec![workflow("weekly", weekly(CatchUp::Once))];
            let mut scheduler = Scheduler::load(&store, &weekly_wf, clock.now())
                .await
                .unwrap();
            assert!(
                scheduler
                    .tick(&store, clock.now())
                    .await
                    .unwrap()
                    .is_empty()
            );
            // Down for three weeks: the restarted daemon loads the state back from the store.
            clock.advance(Duration::weeks(3));
            let mut restarted = Scheduler::load(&store, &weekly_wf, clock.now())
                .await
                .unwrap();
            let queued = restarted.tick(&store, clock.now()).await.unwrap();
            assert_eq!(queued.len(), 1);
            assert_eq!(run_times(&store).await, ["2027-03-22T08:00:00Z"]);
            assert_eq!(
                restarted.next_fire().unwrap().to_rfc3339(),
                "2027-03-29T07:00:00+00:00"
            );
            // A workflow added now has no past to catch up on.
            let added = vec![workflow("added", weekly(CatchUp::All))];
            let mut fresh = Scheduler::load(&store, &added, clock.now()).await.unwrap();
            assert!(fresh.tick(&store, clock.now()).await.unwrap().is_empty());
        }
    }
}
