//! `satflow run`: the scheduler, the runner, the outbox dispatcher and the HTTP server, started
//! together and stopped together.
//!
//! On shutdown nothing new is taken; work in flight gets `engine.shutdown_grace` to finish and
//! is otherwise left to its lease: whatever was not recorded is picked up again by the next
//! daemon, because every piece of work is a row before it starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{Notify, oneshot, watch};

use super::context::Context;
use super::runner::Runner;
use super::scheduler::Scheduler;
use crate::clients::Clients;
use crate::clock::Clock;
use crate::config::Config;
use crate::exchanges::Processor;
use crate::health::{Heartbeat, Heartbeats, Limits};
use crate::http::webhook::WebhookState;
use crate::http::{AppState, router};
use crate::instance::{self, Jobs};
use crate::logs;
use crate::outbox::handlers::email::EmailSender;
use crate::outbox::{Dispatcher, Handlers};
use crate::store::{Store, StoreError};
use crate::workflow::Workflow;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "cannot listen on {addr} (is another satflow or another program using it? change `listen` in satflow.yaml)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Email(String),
}

/// The longest the scheduler sleeps, so a wall clock that jumps is noticed.
const MAX_SCHEDULER_SLEEP: std::time::Duration = std::time::Duration::from_secs(30);
/// How long after start the memory only starting needed is given back (`crate::memory`): by
/// then every loop has made its first pass.
const GIVE_BACK_AFTER: std::time::Duration = std::time::Duration::from_secs(3);

/// Runs the daemon until `shutdown` turns true. `ready` receives the address it listens on.
pub async fn serve(
    config: Config,
    workflows: Vec<Workflow>,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
    ready: Option<oneshot::Sender<SocketAddr>>,
) -> Result<(), DaemonError> {
    let workflows = crate::workflow::shared(workflows);
    serve_shared(Arc::new(config), workflows, clock, shutdown, ready).await
}

/// `serve` for a configuration the caller keeps too (a reload that fails to start goes back to
/// the previous one).
pub async fn serve_shared(
    config: Arc<Config>,
    workflows: Vec<Arc<Workflow>>,
    clock: Arc<dyn Clock>,
    mut shutdown: watch::Receiver<bool>,
    ready: Option<oneshot::Sender<SocketAddr>>,
) -> Result<(), DaemonError> {
    let store = Store::open(&config.database).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| DaemonError::Bind {
        addr: config.listen,
        source,
    })?;
    let dashboard_listener = match config.dashboard.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| DaemonError::Bind { addr, source })?,
        ),
        None => None,
    };
    let context_workflows: Vec<crate::dashboard::WorkflowInfo> = workflows
        .iter()
        .map(|w| crate::dashboard::WorkflowInfo {
            name: w.name.clone(),
            schedule: w.schedule.clone(),
            on_events: !w.events.is_empty(),
        })
        .collect();
    // The instance id is the owner written on every lease this daemon takes.
    let host = instance::host_name();
    let owner = instance::new_id(&host, clock.as_ref());
    // What this daemon runs, on record: the hashes of the configuration and the workflows.
    let files: Vec<&std::path::Path> = workflows.iter().map(|w| w.path.as_path()).collect();
    let started =
        crate::treasury::audit::configuration_entry("daemon.started", &config.path, &files);
    store.audit(&started, clock.now()).await?;
    // Built once: every client, file and setting the parts share.
    let context = Context::build(
        Arc::clone(&config),
        &workflows,
        store.clone(),
        Arc::clone(&clock),
    );
    let Workers {
        dispatcher,
        runner,
        wake_runner,
    } = workers_in(&context, workflows.clone(), owner.clone())?;

    let heartbeats = Heartbeats {
        scheduler: Heartbeat::default(),
        runner: runner.heartbeat.clone(),
        dispatcher: dispatcher.heartbeat.clone(),
    };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(instance::heartbeat(
        store.clone(),
        instance::row(&owner, &host, addr, clock.as_ref()),
        Arc::clone(&clock),
        shutdown.clone(),
    ));
    let jobs = Jobs {
        store: store.clone(),
        owner: owner.clone(),
        clock: Arc::clone(&clock),
        lease: context.lease,
    };
    tasks.spawn(Arc::clone(&dispatcher).run(shutdown.clone()));
    tasks.spawn(Arc::clone(&runner).run(shutdown.clone()));
    if !config.withdraw.is_empty() {
        tasks.spawn(withdrawal_follower(
            jobs.clone(),
            store.clone(),
            Arc::clone(&config),
            Arc::clone(&context.clients),
            Arc::clone(&clock),
            shutdown.clone(),
        ));
    }
    let event_workflows: Vec<Arc<Workflow>> = workflows
        .iter()
        .filter(|w| !w.events.is_empty())
        .cloned()
        .collect();
    // The missed-purchase checker runs at each scheduler pass (`expect:` on pocket.order).
    let expectations = crate::expect::declared(&workflows);
    let checker = (!expectations.is_empty()).then(|| {
        Arc::new(crate::expect::Checker {
            store: store.clone(),
            expectations,
            alerts: context.alerts.clone(),
            env: context.env.clone(),
            wake_outbox: Arc::clone(&runner.wake_outbox),
        })
    });
    tasks.spawn(scheduler_loop(
        store.clone(),
        Arc::clone(&clock),
        workflows,
        heartbeats.scheduler.clone(),
        Arc::clone(&wake_runner),
        PassHooks {
            healthcheck: context.alerts.healthcheck().cloned(),
            checker,
        },
        shutdown.clone(),
    ));
    // Webhooks are stored by the HTTP handler and applied by the processor, which also reads
    // back exchanges that are not final.
    let webhooks = config.pocket.as_ref().map(|pocket| {
        let stored = Arc::new(Notify::new());
        let processor = Arc::new(Processor {
            store: store.clone(),
            config: Arc::clone(&config),
            workflows: Box::new(event_workflows),
            client: context.clients.pocket.clone(),
            alerts: context.alerts.clone(),
            env: context.env.clone(),
            clock: Arc::clone(&clock),
            wake: Arc::clone(&stored),
            wake_runner: Arc::clone(&wake_runner),
            wake_outbox: Arc::clone(&runner.wake_outbox),
            explorers: context.explorers.clone(),
            payout_wallets: context.payout_wallets.clone(),
        });
        tasks.spawn(processor.run(shutdown.clone(), jobs.clone()));
        WebhookState::start(
            &mut tasks,
            store.clone(),
            pocket.webhook_secret.clone(),
            runner.alerts.clone(),
            runner.env.clone(),
            Arc::clone(&clock),
            stored,
        )
    });
    let limits = Limits::for_lease(runner.lease);
    let app = router(
        AppState::new(store.clone(), Arc::clone(&clock), heartbeats, limits)
            .with_instance(owner.clone()),
        webhooks,
    );
    let dashboard =
        crate::dashboard::router(crate::dashboard::Dashboard::new(crate::dashboard::Parts {
            store: store.clone(),
            clock: Arc::clone(&clock),
            config_path: config.path.clone(),
            workflows: context_workflows,
            wallets: config.wallets.keys().cloned().collect(),
            secure_cookies: config.dashboard.secure_cookies,
            wake_runner: Arc::clone(&wake_runner),
            wake_outbox: Arc::clone(&runner.wake_outbox),
        }));
    // The dashboard on `listen` with everything else, or on a listener of its own.
    let app = match dashboard_listener {
        None => app.merge(dashboard),
        Some(listener) => {
            let mut dash_shutdown = shutdown.clone();
            tasks.spawn(async move {
                crate::http::server::serve(listener, dashboard, async move {
                    let _ = dash_shutdown.wait_for(|stop| *stop).await;
                })
                .await;
            });
            app
        }
    };
    let mut http_shutdown = shutdown.clone();
    tasks.spawn(async move {
        crate::http::server::serve(listener, app, async move {
            let _ = http_shutdown.wait_for(|stop| *stop).await;
        })
        .await;
    });
    // Once every loop has made its first passes (recovering leases, a first claim, a first
    // reconciliation), what only starting needed is handed back to the system.
    let mut settled = shutdown.clone();
    tasks.spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(GIVE_BACK_AFTER) => {
                let released = crate::memory::give_back_after_start();
                tracing::debug!(bytes = released, "start-up code pages given back");
            }
            _ = settled.wait_for(|stop| *stop) => {}
        }
    });
    tracing::info!(%addr, owner = %owner, "satflow is running");
    if let Some(ready) = ready {
        let _ = ready.send(addr);
    }

    let _ = shutdown.wait_for(|stop| *stop).await;
    tracing::info!(grace = ?config.engine.shutdown_grace, "stopping: no new work; finishing what is in flight");
    let finished = tokio::time::timeout(config.engine.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            "in-flight work did not finish in time; its leases will hand it to the next daemon"
        );
        tasks.abort_all();
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

// Moved to the context; these paths stay for code written against the old ones.
pub use super::context::{explorers, payout_wallets};

/// The runner and the dispatcher, wired to wake each other.
pub struct Workers {
    pub dispatcher: Arc<Dispatcher>,
    pub runner: Arc<Runner>,
    /// Wakes the runner (new fires, finished waits).
    pub wake_runner: Arc<Notify>,
}

/// Builds the runner and dispatcher for `owner` (the daemon, or `trigger --wait`), with a
/// context of their own.
pub fn workers(
    config: &Arc<Config>,
    workflows: Vec<Workflow>,
    store: &Store,
    clock: Arc<dyn Clock>,
    owner: String,
) -> Result<Workers, DaemonError> {
    let workflows = crate::workflow::shared(workflows);
    let context = Context::build(Arc::clone(config), &workflows, store.clone(), clock);
    workers_in(&context, workflows, owner)
}

/// The runner and dispatcher for `owner`, sharing `context`'s clients.
pub fn workers_in(
    context: &Context,
    workflows: Vec<Arc<Workflow>>,
    owner: String,
) -> Result<Workers, DaemonError> {
    let config = &context.config;
    let sender = config
        .email
        .as_ref()
        .map(EmailSender::new)
        .transpose()
        .map_err(DaemonError::Email)?;
    let wake_outbox = Arc::new(Notify::new());
    let wake_runner = Arc::new(Notify::new());
    let dispatcher = Arc::new(Dispatcher {
        store: context.store.clone(),
        handlers: Handlers::new(
            sender,
            context.clients.pocket.clone(),
            Some(Arc::clone(config)),
            Some(context.store.clone()),
        )
        .with_clients(Arc::clone(&context.clients)),
        effects: Arc::new(crate::actions::effects::Effects),
        clock: Arc::clone(&context.clock),
        config: config.outbox,
        lease: context.lease,
        owner: owner.clone(),
        alerts: context.alerts.clone(),
        env: context.env.clone(),
        wake: Arc::clone(&wake_outbox),
        wake_runner: Arc::clone(&wake_runner),
        heartbeat: Heartbeat::default(),
    });
    let runner = Arc::new(Runner {
        store: context.store.clone(),
        config: Arc::clone(config),
        pocket: context.clients.pocket.clone(),
        clients: Arc::clone(&context.clients),
        clock: Arc::clone(&context.clock),
        workflows: workflows
            .into_iter()
            .map(|w| (w.name.clone(), w))
            .collect::<BTreeMap<_, _>>(),
        mailer: context.mailer.clone(),
        alerts: context.alerts.clone(),
        owner,
        lease: context.lease,
        env: context.env.clone(),
        wake_outbox,
        wake: Arc::clone(&wake_runner),
        heartbeat: Heartbeat::default(),
    });
    Ok(Workers {
        dispatcher,
        runner,
        wake_runner,
    })
}

/// Follows withdrawals until their transactions are confirmed, on one instance at a time.
async fn withdrawal_follower(
    jobs: Jobs,
    store: Store,
    config: Arc<Config>,
    clients: Arc<Clients>,
    clock: Arc<dyn Clock>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = config
        .engine
        .follow_every
        .clamp(std::time::Duration::from_millis(100), MAX_SCHEDULER_SLEEP);
    while !*shutdown.borrow() {
        if jobs.hold(instance::WITHDRAWALS, every).await {
            match crate::withdraw::follow(&store, &config, &clients, &clock).await {
                Ok(_) => logs::recovered("following withdrawals"),
                Err(err) => logs::store_error(&store, "following withdrawals", &err),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// What runs after each scheduler pass besides firing schedules.
struct PassHooks {
    /// The outside liveness ping (`healthcheck:`).
    healthcheck: Option<Arc<crate::notify::channels::healthcheck::Pinger>>,
    /// The missed-purchase checker (`expect:` on pocket.order).
    checker: Option<Arc<crate::expect::Checker>>,
}

async fn scheduler_loop(
    store: Store,
    clock: Arc<dyn Clock>,
    workflows: Vec<Arc<Workflow>>,
    heartbeat: Heartbeat,
    wake_runner: Arc<Notify>,
    hooks: PassHooks,
    mut shutdown: watch::Receiver<bool>,
) {
    let PassHooks {
        healthcheck,
        checker,
    } = hooks;
    let mut scheduler = loop {
        match Scheduler::load(&store, &workflows, clock.now()).await {
            Ok(s) => break s,
            Err(err) => {
                logs::store_error(
                    &store,
                    "scheduler: cannot read its state; trying again in 5 s",
                    &err,
                );
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    };
    let mut last_check: Option<chrono::DateTime<chrono::Utc>> = None;
    while !*shutdown.borrow() {
        match scheduler.tick(&store, clock.now()).await {
            Ok(queued) => {
                if !queued.is_empty() {
                    wake_runner.notify_one();
                }
                heartbeat.beat(clock.now());
                logs::recovered("scheduler");
                // Sent from a task of its own: a slow or failing ping never holds the pass.
                if let Some(pinger) = &healthcheck {
                    pinger.pass(clock.now());
                }
            }
            Err(err) => logs::store_error(&store, "scheduler", &err),
        }
        // At most once a minute: a pass reads every exchange, and windows are days long.
        let now = clock.now();
        if let Some(checker) = &checker
            && last_check.is_none_or(|t| now < t || now - t >= chrono::Duration::minutes(1))
        {
            last_check = Some(now);
            if let Err(err) = checker.pass(now).await {
                logs::store_error(&store, "missed-purchase checker", &err);
            }
        }
        let now = clock.now();
        let wait = scheduler
            .next_fire()
            .map(|next| (next - now).to_std().unwrap_or_default())
            .unwrap_or(MAX_SCHEDULER_SLEEP)
            .clamp(std::time::Duration::from_millis(10), MAX_SCHEDULER_SLEEP);
        let jumped = clock.jumped();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = async {
                match &jumped {
                    Some(jumped) => jumped.notified().await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = shutdown.changed() => {}
        }
    }
}
