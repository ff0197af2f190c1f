//! The runner: takes queued runs and executes their steps in order, recording each step's
//! outcome (with the effects it causes) before the next step starts.
//!
//! A run claimed again after a crash resumes at its first unrecorded step: recorded steps are
//! never executed twice. A step never calls the outside world itself; its effects are outbox
//! items committed with its result, and a step that needs an effect's answer waits for it.
//!
//! Several runs execute at once (`CONCURRENCY`), each in a task of its own under its lease,
//! which the runner renews while the run executes: a slow step holds only its own run. A run
//! that panics is failed with the reason; it never stops the runner or another run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::Duration;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::health::Heartbeat;
use super::logs;
use crate::actions::pocket_order::Payout;
use crate::actions::{Action, StepCx, StepOutcome, skipped_output};
use crate::clients::Clients;
use crate::clock::Clock;
use crate::config::{Alert, Config};
use crate::expr::eval_condition;
use crate::notify::email::{Alerts, Mailer};
use crate::pocket::PocketClient;
use crate::store::{Recorded, RunRow, StepRecord, StepStatus, Store, StoreError};
use crate::workflow::{Step, Workflow};

pub struct Runner {
    pub store: Store,
    pub config: Arc<Config>,
    pub pocket: Option<PocketClient>,
    /// The clients the daemon built at start, for steps that reach a Lightning node.
    pub clients: Arc<Clients>,
    pub clock: Arc<dyn Clock>,
    pub workflows: BTreeMap<String, Arc<Workflow>>,
    pub mailer: Option<Mailer>,
    pub alerts: Alerts,
    pub owner: String,
    pub lease: Duration,
    pub env: minijinja::Environment<'static>,
    /// Notified after this runner committed outbox items.
    pub wake_outbox: Arc<Notify>,
    /// Notified when there may be runs to take (new fires, finished waits).
    pub wake: Arc<Notify>,
    /// Marked after each pass that reached the database, for `/healthz`.
    pub heartbeat: Heartbeat,
}

/// How many runs one runner executes at once.
pub const CONCURRENCY: usize = 4;

/// The longest the runner waits before looking for runs again: `satflow trigger` in another
/// process cannot wake it.
const POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// The log line of a failing pass of the runner (rate-limited).
const RUNNER: &str = "runner";

/// Aborts a task when dropped: a run's task does not outlive the runner that awaits it.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The text a panic carried.
fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(s) => *s,
        Err(panic) => match panic.downcast::<&'static str>() {
            Ok(s) => (*s).to_string(),
            Err(_) => "a panic without a message".to_string(),
        },
    }
}

impl Runner {
    /// Runs until `shutdown` turns true; the runs in progress are finished first (their leases
    /// renewed meanwhile).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut in_flight: JoinSet<i64> = JoinSet::new();
        let mut busy: HashSet<i64> = HashSet::new();
        let renew_every = (self.lease / 3)
            .to_std()
            .unwrap_or(POLL)
            .clamp(std::time::Duration::from_millis(100), POLL * 20);
        let mut renewed_at = tokio::time::Instant::now();
        while !*shutdown.borrow() {
            while let Some(done) = in_flight.try_join_next() {
                if let Ok(id) = done {
                    busy.remove(&id);
                }
            }
            let mut reached_database = true;
            if renewed_at.elapsed() >= renew_every {
                renewed_at = tokio::time::Instant::now();
                reached_database &= self.renew(&busy).await;
            }
            // A step whose approvals ran out of time fails (its run is queued to end).
            if let Err(err) = self.store.expire_approvals(self.clock.now()).await {
                logs::store_error(&self.store, RUNNER, &err);
                reached_database = false;
            }
            while busy.len() < CONCURRENCY {
                let taken: Vec<i64> = busy.iter().copied().collect();
                match self
                    .store
                    .claim_run(&self.owner, self.clock.now(), self.lease, &taken)
                    .await
                {
                    Ok(Some(run)) => {
                        busy.insert(run.id);
                        in_flight.spawn(Arc::clone(&self).guarded(run));
                    }
                    Ok(None) => break,
                    Err(err) => {
                        logs::store_error(&self.store, RUNNER, &err);
                        reached_database = false;
                        break;
                    }
                }
            }
            if reached_database {
                self.heartbeat.beat(self.clock.now());
                logs::recovered(RUNNER);
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL.min(renew_every)) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => {}
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Ok(id) = done {
                        busy.remove(&id);
                    }
                }
            }
        }
        // Stopping: nothing new is taken; what is in flight finishes under a renewed lease.
        while !in_flight.is_empty() {
            tokio::select! {
                Some(done) = in_flight.join_next() => {
                    if let Ok(id) = done {
                        busy.remove(&id);
                    }
                }
                _ = tokio::time::sleep(renew_every) => {
                    self.renew(&busy).await;
                }
            }
        }
    }

    /// Extends the leases of the runs in flight; false when the database could not be reached.
    async fn renew(&self, busy: &HashSet<i64>) -> bool {
        let runs: Vec<i64> = busy.iter().copied().collect();
        match self
            .store
            .renew_run_leases(&self.owner, &runs, self.clock.now(), self.lease)
            .await
        {
            Ok(_) => true,
            Err(err) => {
                logs::store_error(
                    &self.store,
                    "runner: cannot renew the leases of the runs in flight",
                    &err,
                );
                false
            }
        }
    }

    /// Executes `run` in a task of its own and returns its id when that task ends. A panic
    /// fails the run with the reason; a database error leaves the run to its lease, so it is
    /// taken up again once the lease runs out.
    async fn guarded(self: Arc<Self>, run: RunRow) -> i64 {
        let id = run.id;
        let me = Arc::clone(&self);
        let row = run.clone();
        let task = tokio::spawn(async move { me.execute(row).await });
        let _abort = AbortOnDrop(task.abort_handle());
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                if matches!(err, StoreError::Sql(_)) {
                    self.store
                        .write_health()
                        .failed(&format!("run {id}: {err}"));
                }
                tracing::error!(run = id, %err, "a run stopped on a database error; it resumes once its lease runs out");
            }
            Err(join) if join.is_panic() => {
                let message = panic_message(join.into_panic());
                tracing::error!(run = id, panic = %message, "a run panicked; it is failed and the runner goes on");
                let workflow = self.workflows.get(&run.workflow).map(|w| &**w);
                let error = format!("satflow hit an internal error: {message}");
                if let Err(err) = self.fail(&run, workflow, &error).await {
                    tracing::error!(run = id, %err, "cannot record the run that panicked as failed; it is taken up again once its lease runs out");
                }
            }
            Err(_) => {}
        }
        id
    }

    #[tracing::instrument(name = "run", skip_all, fields(run_id = run.id, workflow = %run.workflow))]
    async fn execute(&self, run: RunRow) -> Result<(), StoreError> {
        let Some(workflow) = self.workflows.get(&run.workflow) else {
            let error = format!(
                "workflow `{}` is no longer defined in the configuration",
                run.workflow
            );
            return self.fail(&run, None, &error).await;
        };
        let recorded: HashMap<String, crate::store::StepRow> = self
            .store
            .steps(run.id)
            .await?
            .into_iter()
            .map(|s| (s.step_id.clone(), s))
            .collect();
        let verb = if recorded.is_empty() {
            "run started"
        } else {
            "run resumed"
        };
        // The order keeper of a workflow (its `pocket.order` step) runs on one instance at a
        // time: a run that finds another instance keeping that order goes back to the queue
        // after a pause, to be taken again once that instance is done.
        let keeper = workflow
            .steps
            .iter()
            .any(|s| matches!(s.action, Action::PocketOrder(_)))
            .then(|| crate::instance::order_keeper(&workflow.name));
        if let Some(job) = &keeper {
            let held = self
                .store
                .hold_job(
                    job,
                    &self.owner,
                    self.clock.now(),
                    crate::instance::KEEPER_LEASE,
                )
                .await?;
            if !held {
                tracing::info!(run = run.id, workflow = %workflow.name, "another instance keeps this workflow's order now; the run waits its turn");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                self.store.release_to_waiting(run.id, &self.owner).await?;
                return Ok(());
            }
        }
        let result = self.execute_steps(&run, workflow, recorded, verb).await;
        if let Some(job) = &keeper
            && let Err(err) = self.store.release_job(job, &self.owner).await
        {
            tracing::warn!(%err, "cannot hand back the order keeper's lease; it expires by itself");
        }
        result
    }

    /// The steps of `run` from its first unrecorded one.
    async fn execute_steps(
        &self,
        run: &RunRow,
        workflow: &Workflow,
        recorded: HashMap<String, crate::store::StepRow>,
        verb: &str,
    ) -> Result<(), StoreError> {
        let run = run.clone();
        tracing::info!(run = run.id, workflow = %workflow.name, trigger = %run.trigger, done = recorded.len(), "{verb}");
        let mut outputs = Map::new();
        for (position, step) in workflow.steps.iter().enumerate() {
            if let Some(done) = recorded.get(&step.id) {
                match done.status {
                    StepStatus::Succeeded => {
                        outputs.insert(step.id.clone(), done.output.clone().unwrap_or(json!({})));
                        continue;
                    }
                    StepStatus::Skipped => {
                        outputs.insert(step.id.clone(), skipped_output(step.uses));
                        continue;
                    }
                    StepStatus::Failed => {
                        let error = done.error.clone().unwrap_or_default();
                        return self
                            .fail(
                                &run,
                                Some(workflow),
                                &format!("step `{}` failed: {error}", step.id),
                            )
                            .await;
                    }
                    // Its outbox item hands the run back when it is done; until then the run
                    // waits rather than holding a lease.
                    StepStatus::Waiting => {
                        self.store.release_to_waiting(run.id, &self.owner).await?;
                        return Ok(());
                    }
                }
            }
            let started_at = self.clock.now();
            let ctx = self.context(&run, workflow, &outputs);
            // A step that reserved an address another run took meanwhile decides again.
            let mut tries = 0;
            let outcome = loop {
                let outcome = match &step.condition {
                    Some(condition) => match eval_condition(&self.env, condition, &ctx) {
                        Ok(true) => self.perform(&run, step, &ctx).await,
                        Ok(false) => StepOutcome::skipped(step.uses),
                        Err(e) => StepOutcome::failed(format!("if: {e}")),
                    },
                    None => self.perform(&run, step, &ctx).await,
                };
                // A step whose effects need approvals records them only once approved.
                let outcome = match self
                    .gate(&run, workflow, step, position, started_at, &ctx, outcome)
                    .await?
                {
                    Gate::Record(outcome) => *outcome,
                    Gate::Held => return Ok(()),
                };
                let record = StepRecord {
                    step_id: &step.id,
                    position,
                    status: outcome.status,
                    output: outcome.output.clone(),
                    error: outcome.error.clone(),
                    started_at,
                    effects: outcome.effects.clone(),
                    reservation: outcome.reservation.clone(),
                    withdrawal: outcome.withdrawal.clone(),
                    audit: outcome.audit.clone(),
                };
                match self
                    .store
                    .record_step(run.id, &self.owner, record, self.clock.now(), self.lease)
                    .await?
                {
                    Recorded::Done => break outcome,
                    Recorded::LeaseLost => {
                        tracing::warn!(
                            run = run.id,
                            "another daemon took this run over; leaving it"
                        );
                        return Ok(());
                    }
                    Recorded::Conflict if tries < 10 => tries += 1,
                    Recorded::Conflict => {
                        let failed = StepOutcome::failed(
                            "could not reserve an address: other runs kept taking them",
                        );
                        let record = StepRecord {
                            step_id: &step.id,
                            position,
                            status: failed.status,
                            output: None,
                            error: failed.error.clone(),
                            started_at,
                            effects: Vec::new(),
                            reservation: None,
                            withdrawal: None,
                            audit: Vec::new(),
                        };
                        self.store
                            .record_step(run.id, &self.owner, record, self.clock.now(), self.lease)
                            .await?;
                        break failed;
                    }
                }
            };
            let has_effects = !outcome.effects.is_empty();
            if has_effects {
                self.wake_outbox.notify_one();
            }
            match outcome.status {
                StepStatus::Waiting => {
                    tracing::info!(run = run.id, step = %step.id, "step waits for its outbox item");
                    return Ok(());
                }
                StepStatus::Failed => {
                    let error = outcome.error.unwrap_or_default();
                    return self
                        .fail(
                            &run,
                            Some(workflow),
                            &format!("step `{}` failed: {error}", step.id),
                        )
                        .await;
                }
                StepStatus::Succeeded | StepStatus::Skipped => {
                    outputs.insert(step.id.clone(), outcome.output.unwrap_or(json!({})));
                }
            }
        }
        if self
            .store
            .finish_run(run.id, &self.owner, true, None, None, self.clock.now())
            .await?
        {
            crate::http::metrics::count("satflow_runs_total", &[("outcome", "succeeded")]);
            tracing::info!(run = run.id, workflow = %workflow.name, "run succeeded");
        } else {
            // Fenced: this instance's lease ran out and another took the run over.
            tracing::warn!(run = run.id, owner = %self.owner, "the run's end was refused: another instance holds its lease now");
        }
        Ok(())
    }

    /// Holds an effectful outcome of a step with `approval:` until its approvals are given: the
    /// first time, the request (with the approvers' emails) is recorded instead of the outcome
    /// and the run waits; once approved, the outcome (decided again) is recorded as usual; a
    /// rejected or expired request fails the step.
    #[allow(clippy::too_many_arguments)]
    async fn gate(
        &self,
        run: &RunRow,
        workflow: &Workflow,
        step: &Step,
        position: usize,
        started_at: chrono::DateTime<chrono::Utc>,
        ctx: &Value,
        outcome: StepOutcome,
    ) -> Result<Gate, StoreError> {
        use crate::store::ApprovalStatus;
        use crate::treasury::approvals;
        let Some(rule) = &step.approval else {
            return Ok(Gate::Record(Box::new(outcome)));
        };
        if outcome.status == StepStatus::Failed || !approvals::needs_approval(&outcome) {
            return Ok(Gate::Record(Box::new(outcome)));
        }
        if let Some(when) = &rule.when {
            match eval_condition(&self.env, when, ctx) {
                Ok(true) => {}
                Ok(false) => return Ok(Gate::Record(Box::new(outcome))),
                Err(e) => {
                    return Ok(Gate::Record(Box::new(StepOutcome::failed(format!(
                        "approval.when: {e}"
                    )))));
                }
            }
        }
        match self.store.approval_for_step(run.id, &step.id).await? {
            Some(a) if a.status == ApprovalStatus::Approved => {
                return Ok(Gate::Record(Box::new(outcome)));
            }
            Some(a) if a.status == ApprovalStatus::Pending => {
                self.store.release_to_waiting(run.id, &self.owner).await?;
                return Ok(Gate::Held);
            }
            Some(a) => {
                let why = a
                    .reason
                    .unwrap_or_else(|| format!("the approval was {}", a.status.name()));
                return Ok(Gate::Record(Box::new(StepOutcome::failed(why))));
            }
            None => {}
        }
        let now = self.clock.now();
        let deadline = now + rule.within;
        let summary = approvals::summary(&workflow.name, &step.id, step.uses, rule, &outcome);
        let proposer = self.store.run_proposer(run.id).await?;
        let mut tokens = Vec::new();
        let mut emails = Vec::new();
        for approver in &rule.approvers {
            let (token, hash) = match approvals::new_token() {
                Ok(t) => t,
                Err(e) => return Ok(Gate::Record(Box::new(StepOutcome::failed(e)))),
            };
            tokens.push((approver.clone(), hash));
            if proposer.as_deref() == Some(approver.as_str()) {
                continue;
            }
            if let Some(mailer) = &self.mailer {
                // The dashboard's own listener when it has one.
                let at = self.config.dashboard.listen.unwrap_or(self.config.listen);
                let link = format!(
                    "http://{at}/approvals/run/{}/{}?token={token}",
                    run.id, step.id
                );
                let body = approvals::email_body(
                    approver,
                    &format!("run/{}/{}", run.id, step.id),
                    &summary,
                    &deadline.to_rfc3339(),
                    &link,
                );
                let subject = format!(
                    "[satflow] approval needed from {approver}: {} step {}",
                    workflow.name, step.id
                );
                match approvals::email_item(
                    mailer,
                    &self.env,
                    format!("approval/run/{}/{}/{approver}", run.id, step.id),
                    &subject,
                    &body,
                ) {
                    Ok(item) => emails.push(item),
                    Err(e) => tracing::error!(run = run.id, %e, "cannot compose an approval email"),
                }
            }
        }
        let request = crate::store::NewApproval {
            run_id: run.id,
            step_id: step.id.clone(),
            position,
            workflow: workflow.name.clone(),
            required: rule.required,
            approvers: rule.approvers.clone(),
            proposer,
            summary,
            started_at,
            deadline,
            tokens,
            emails,
        };
        if self
            .store
            .request_approval(&self.owner, &request, now, self.lease)
            .await?
            .is_some()
        {
            tracing::info!(run = run.id, step = %step.id, required = rule.required, "step waits for approvals");
            self.wake_outbox.notify_one();
        } else {
            tracing::warn!(
                run = run.id,
                "another daemon took this run over; leaving it"
            );
        }
        Ok(Gate::Held)
    }

    async fn fail(
        &self,
        run: &RunRow,
        workflow: Option<&Workflow>,
        error: &str,
    ) -> Result<(), StoreError> {
        let ctx = self.context_of(
            run,
            workflow.unwrap_or(&placeholder(&run.workflow)),
            &Map::new(),
            Some(error),
        );
        let alert = self
            .alerts
            .item(&self.env, Alert::RunFailed, &run.id.to_string(), &ctx);
        let queued_alert = alert.is_some();
        if self
            .store
            .finish_run(
                run.id,
                &self.owner,
                false,
                Some(error),
                alert,
                self.clock.now(),
            )
            .await?
        {
            crate::http::metrics::count("satflow_runs_total", &[("outcome", "failed")]);
            tracing::error!(run = run.id, workflow = %run.workflow, %error, "run failed");
            if let Some(pinger) = self.alerts.healthcheck() {
                pinger.fail();
            }
            if queued_alert {
                self.wake_outbox.notify_one();
            }
        } else {
            tracing::warn!(run = run.id, owner = %self.owner, "the run's failure was refused: another instance holds its lease now");
        }
        Ok(())
    }

    /// `event`, `steps`, `run` and `workflow`, as expressions and templates see them.
    fn context(&self, run: &RunRow, workflow: &Workflow, outputs: &Map<String, Value>) -> Value {
        self.context_of(run, workflow, outputs, None)
    }

    /// The context, with the run's `error` when it failed (for the alert).
    fn context_of(
        &self,
        run: &RunRow,
        workflow: &Workflow,
        outputs: &Map<String, Value>,
        error: Option<&str>,
    ) -> Value {
        let mut about = Map::new();
        about.insert("id".into(), json!(run.id));
        about.insert("trigger".into(), json!(run.trigger));
        about.insert("key".into(), json!(run.trigger_key));
        about.insert(
            "started_at".into(),
            json!(run.started_at.map(|t| t.to_rfc3339())),
        );
        if let Some(error) = error {
            about.insert("error".into(), json!(error));
        }
        json!({
            "event": run.event.clone().unwrap_or(Value::Null),
            "steps": outputs,
            "run": about,
            "workflow": { "name": workflow.name },
        })
    }

    /// Decides what a step does, through its action. Effects are returned, not performed.
    #[tracing::instrument(name = "step", skip_all, fields(run_id = run.id, step_id = %step.id, uses = step.uses))]
    async fn perform(&self, run: &RunRow, step: &Step, ctx: &Value) -> StepOutcome {
        let processor = || self.processor();
        let declared_node = |workflow: &str| self.declared_node(workflow);
        let cx = StepCx {
            store: &self.store,
            config: &self.config,
            pocket: self.pocket.as_ref(),
            clients: &self.clients,
            clock: &self.clock,
            declared_node: &declared_node,
            mailer: self.mailer.as_ref(),
            env: &self.env,
            processor: &processor,
            run,
            step_id: &step.id,
            ctx,
        };
        step.action.perform(&cx).await
    }

    /// The Lightning node the named workflow's first `pocket.order` that pays by Lightning
    /// names.
    fn declared_node(&self, workflow: &str) -> Option<String> {
        self.workflows.get(workflow).and_then(|w| {
            w.steps.iter().find_map(|s| match &s.action {
                Action::PocketOrder(o) => match &o.payout {
                    Payout::Lightning { node, .. } => Some(node.clone()),
                    Payout::Wallet { .. } => None,
                },
                _ => None,
            })
        })
    }

    /// The exchange processor's state machine, for a step that reads an exchange back.
    fn processor(&self) -> crate::exchanges::Processor {
        let workflows: Vec<Arc<Workflow>> = self
            .workflows
            .values()
            .filter(|w| !w.events.is_empty())
            .cloned()
            .collect();
        let all: Vec<Arc<Workflow>> = self.workflows.values().cloned().collect();
        let payout_wallets = super::context::payout_wallets(&all);
        let explorers = super::context::explorers(&self.config, &payout_wallets);
        crate::exchanges::Processor {
            store: self.store.clone(),
            config: Arc::clone(&self.config),
            workflows: Box::new(workflows),
            client: None,
            alerts: self.alerts.clone(),
            env: self.env.clone(),
            clock: Arc::clone(&self.clock),
            wake: Arc::new(Notify::new()),
            wake_runner: Arc::clone(&self.wake),
            wake_outbox: Arc::clone(&self.wake_outbox),
            explorers,
            payout_wallets,
        }
    }
}

/// What the approval gate lets through.
enum Gate {
    /// Record this outcome (no approval needed, approved, or the step fails).
    Record(Box<StepOutcome>),
    /// The step waits for approvals; the run is handed back.
    Held,
}

/// A stand-in for a workflow that is gone, so its failure can still be reported.
fn placeholder(name: &str) -> Workflow {
    Workflow {
        name: name.to_string(),
        path: Default::default(),
        schedule: None,
        events: Vec::new(),
        exchanges: Default::default(),
        steps: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::config::{Database, EngineConfig, OutboxConfig, PriceSource, PricesConfig};
    use crate::outbox::Effect;
    use crate::store::{RunStatus, Trigger};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The system's time, except that the first reading after `arm` panics: a fault injected
    /// into a run's execution, which reads the time to record its end.
    struct Tripwire(AtomicBool);

    impl Clock for Tripwire {
        fn now(&self) -> chrono::DateTime<chrono::Utc> {
            if self.0.swap(false, Ordering::SeqCst) {
                panic!("Multiplication overflowed");
            }
            SystemClock.now()
        }
    }

    fn runner(store: &Store, clock: Arc<Tripwire>) -> Arc<Runner> {
        let config = Config {
            path: "satflow.yaml".into(),
            database: Database::Sqlite("db".into()),
            workflow_files: Vec::new(),
            listen: "127.0.0.1:0".parse().unwrap(),
            pocket: None,
            email: None,
            wallets: Default::default(),
            lightning: Default::default(),
            withdraw: Default::default(),
            prices: PricesConfig {
                sources: vec![PriceSource::Peach],
                peach_url: "http://127.0.0.1:9".parse().unwrap(),
                bitpay_url: "http://127.0.0.1:9".parse().unwrap(),
                max_age: std::time::Duration::from_secs(60),
                sanity_percent: None,
            },
            outbox: OutboxConfig::default(),
            engine: EngineConfig::default(),
            alerts: Default::default(),
            alert_routes: Default::default(),
            notify: Default::default(),
            healthcheck: None,
            templates: Default::default(),
            dashboard: Default::default(),
        };
        Arc::new(Runner {
            store: store.clone(),
            config: Arc::new(config),
            pocket: None,
            clients: Arc::new(crate::clients::Clients::none()),
            clock,
            workflows: [("w".to_string(), Arc::new(placeholder("w")))]
                .into_iter()
                .collect(),
            mailer: None,
            alerts: Alerts::new(None, Default::default()),
            owner: "test".into(),
            lease: Duration::seconds(30),
            env: crate::expr::environment(),
            wake_outbox: Arc::new(Notify::new()),
            wake: Arc::new(Notify::new()),
            heartbeat: Heartbeat::default(),
        })
    }

    /// A runner for the one workflow `w` made of `steps`, with an email section (a folder).
    fn runner_of(store: &Store, steps: Vec<Step>) -> Arc<Runner> {
        let runner = runner(store, Arc::new(Tripwire(AtomicBool::new(false))));
        let mut runner = Arc::into_inner(runner).unwrap();
        let email = crate::config::EmailConfig {
            transport: crate::config::EmailTransport::Dir("mail".into()),
            from: "satflow@example.com".parse().unwrap(),
            to: vec!["me@example.com".parse().unwrap()],
        };
        runner.mailer = Some(Mailer::new(&email, Default::default()));
        let mut workflow = placeholder("w");
        workflow.steps = steps;
        runner.workflows = [("w".to_string(), Arc::new(workflow))]
            .into_iter()
            .collect();
        Arc::new(runner)
    }

    fn step(id: &str, action: crate::actions::Action, condition: Option<&str>) -> Step {
        let uses = match &action {
            crate::actions::Action::Email(_) => "email",
            crate::actions::Action::HttpPost(_) => "http.post",
            _ => unreachable!("these tests use email and http.post"),
        };
        Step {
            id: id.into(),
            uses,
            action,
            condition: condition.map(str::to_string),
            approval: None,
            pos: crate::source::Pos { line: 1, col: 1 },
            index: 0,
        }
    }

    fn email(subject: &str) -> crate::actions::Action {
        crate::actions::Action::Email(crate::actions::Email {
            content: crate::actions::email::EmailContent::Inline {
                subject: subject.into(),
                body: "body".into(),
            },
            to: Vec::new(),
        })
    }

    fn post(url: crate::actions::Param<url::Url>, json: Value) -> crate::actions::Action {
        crate::actions::Action::HttpPost(crate::actions::HttpPost {
            url,
            url_secrets: Vec::new(),
            json,
            headers: Vec::new(),
            timeout: std::time::Duration::from_secs(5),
        })
    }

    /// Queues a run of `w`, claims it and executes it as far as it goes.
    async fn execute_one(store: &Store, runner: &Runner) -> i64 {
        let now = crate::clock::system_now();
        store
            .queue_run("w", Trigger::Manual, "k", None, now)
            .await
            .unwrap();
        let run = store
            .claim_run("test", now, Duration::seconds(30), &[])
            .await
            .unwrap()
            .unwrap();
        runner.execute(run.clone()).await.unwrap();
        run.id
    }

    #[tokio::test]
    async fn a_step_whose_condition_is_false_is_skipped_and_later_steps_see_it_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db")).await.unwrap();
        let runner = runner_of(
            &store,
            vec![
                step("quiet", email("never"), Some("false")),
                step("loud", email("sent"), Some("steps.quiet.skipped")),
            ],
        );
        let id = execute_one(&store, &runner).await;
        assert_eq!(
            store.run(id).await.unwrap().unwrap().status,
            RunStatus::Succeeded
        );
        let steps = store.steps(id).await.unwrap();
        assert_eq!(
            steps
                .iter()
                .map(|s| (s.step_id.as_str(), s.status.name()))
                .collect::<Vec<_>>(),
            [("quiet", "skipped"), ("loud", "succeeded")]
        );
        assert_eq!(
            steps[0].output,
            Some(json!({ "message_id": null, "skipped": true }))
        );
        let emails: Vec<_> = store.outbox_items(50).await.unwrap();
        assert_eq!(emails.len(), 1, "only the step that ran queued an email");
        let sent = crate::outbox::handlers::email::EmailEffect::decode(&emails[0].payload).unwrap();
        assert_eq!(sent.subject, "sent");
    }

    #[tokio::test]
    async fn a_failed_step_fails_the_run_and_no_later_step_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db")).await.unwrap();
        let runner = runner_of(
            &store,
            vec![
                step(
                    "hook",
                    post(
                        crate::actions::Param::Template("not a url {{ run.id }}".into()),
                        json!({}),
                    ),
                    None,
                ),
                step("after", email("must not be sent"), None),
            ],
        );
        let id = execute_one(&store, &runner).await;
        let run = store.run(id).await.unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Failed);
        let error = run.error.unwrap_or_default();
        assert!(
            error.starts_with("step `hook` failed: url: \"not a url 1\" (from the template)"),
            "{error}"
        );
        let steps = store.steps(id).await.unwrap();
        assert_eq!(steps.len(), 1, "{steps:?}");
        assert_eq!(steps[0].status, StepStatus::Failed);
        assert!(store.outbox_items(50).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_steps_output_reaches_the_templates_of_a_later_step() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db")).await.unwrap();
        let runner = runner_of(
            &store,
            vec![
                step("mail", email("hello"), None),
                step(
                    "hook",
                    post(
                        crate::actions::Param::Value("http://127.0.0.1:9/hook".parse().unwrap()),
                        json!({ "sent": "{{ steps.mail.message_id }}", "n": 1 }),
                    ),
                    None,
                ),
            ],
        );
        let id = execute_one(&store, &runner).await;
        // The POST is an effect the run waits for.
        assert_eq!(
            store.run(id).await.unwrap().unwrap().status,
            RunStatus::Waiting
        );
        let steps = store.steps(id).await.unwrap();
        let message_id = crate::notify::email::message_id(
            &format!("run/{id}/step/mail"),
            &"satflow@example.com".parse().unwrap(),
        );
        assert_eq!(steps[0].output, Some(json!({ "message_id": message_id })));
        assert_eq!(steps[1].status, StepStatus::Waiting);
        let items = store.outbox_items(50).await.unwrap();
        let hook = items.iter().find(|i| i.kind == "http").expect("the POST");
        let payload = crate::actions::http_post::HttpEffect::decode(&hook.payload).unwrap();
        assert_eq!(payload.json, json!({ "sent": message_id, "n": 1 }));
        assert_eq!(hook.key, format!("run/{id}/step/hook"));
    }

    #[tokio::test]
    async fn a_run_that_panics_is_failed_with_the_reason_and_the_next_run_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db")).await.unwrap();
        let clock = Arc::new(Tripwire(AtomicBool::new(false)));
        let runner = runner(&store, Arc::clone(&clock));
        let now = crate::clock::system_now();
        for key in ["poison", "normal"] {
            store
                .queue_run("w", Trigger::Manual, key, None, now)
                .await
                .unwrap();
        }
        let poison = store
            .claim_run("test", now, Duration::seconds(30), &[])
            .await
            .unwrap()
            .unwrap();
        clock.0.store(true, Ordering::SeqCst);
        assert_eq!(Arc::clone(&runner).guarded(poison).await, 1);
        let failed = store.run(1).await.unwrap().unwrap();
        assert_eq!(failed.status, RunStatus::Failed);
        assert_eq!(
            failed.error.as_deref(),
            Some("satflow hit an internal error: Multiplication overflowed")
        );

        // The runner's loop takes the next run as if nothing happened.
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(Arc::clone(&runner).run(stopped));
        let mut waited = 0;
        while store.run(2).await.unwrap().unwrap().status != RunStatus::Succeeded {
            assert!(waited < 100, "the next run did not succeed");
            waited += 1;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let _ = stop.send(true);
        task.await.unwrap();
        assert!(
            runner.heartbeat.last().is_some(),
            "the runner's passes are marked"
        );
        assert_eq!(
            store.run(1).await.unwrap().unwrap().status,
            RunStatus::Failed
        );
    }

    #[tokio::test]
    async fn runs_in_flight_are_not_taken_twice_and_keep_their_lease() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db")).await.unwrap();
        let t0 = crate::clock::system_now();
        for key in ["a", "b"] {
            store
                .queue_run("w", Trigger::Manual, key, None, t0)
                .await
                .unwrap();
        }
        let lease = Duration::seconds(1);
        let a = store
            .claim_run("me", t0, lease, &[])
            .await
            .unwrap()
            .unwrap();
        // Its lease ran out while a slow step executes: this runner does not take it again.
        let later = t0 + Duration::seconds(5);
        let next = store
            .claim_run("me", later, lease, &[a.id])
            .await
            .unwrap()
            .unwrap();
        assert_ne!(next.id, a.id);
        assert_eq!(
            store
                .claim_run("me", later, lease, &[a.id, next.id])
                .await
                .unwrap()
                .map(|r| r.id),
            None
        );
        // Renewed, neither is taken by another daemon.
        assert_eq!(
            store
                .renew_run_leases("me", &[a.id, next.id], later, lease)
                .await
                .unwrap()
                .len(),
            2
        );
        let other = store
            .claim_run("other", later + Duration::milliseconds(500), lease, &[])
            .await
            .unwrap();
        assert!(other.is_none(), "{other:?}");
        // A lease held by someone else is not renewed by us.
        let stolen = store
            .claim_run("other", later + Duration::seconds(2), lease, &[])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            store
                .renew_run_leases("me", &[stolen.id], later + Duration::seconds(2), lease)
                .await
                .unwrap(),
            Vec::<i64>::new()
        );
    }
}
