//! `satflow run`: the daemon, until SIGINT or SIGTERM; SIGHUP re-reads the setup.
//!
//! On SIGHUP satflow.yaml and every workflow are read and checked again. A setup with problems
//! is refused: each problem is logged and the running daemon is left exactly as it was. A good
//! one replaces the running daemon the way a stop and a start would (in-flight work gets the
//! shutdown grace, then its lease), so schedules, clients and the listen address are all the
//! new ones; if the new setup cannot start (its port taken, its database unreadable) the
//! previous one is started again. It must never exit on a bad reload, and never run two
//! daemons at once.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::{Outcome, Setup, daemon_runtime, load_setup, print_problems};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::engine::daemon::{self, DaemonError};
use crate::workflow::Workflow;

pub fn run(config_path: &Path) -> anyhow::Result<Outcome> {
    limit_malloc_arenas();
    let Setup { config, workflows } = match load_setup(config_path) {
        Ok(setup) => setup,
        Err(problems) => {
            print_problems(&problems);
            return Ok(Outcome::UserError);
        }
    };
    daemon_runtime(&config.engine)?.block_on(supervise(config_path, Arc::new(config), workflows))
}

/// glibc gives threads that allocate concurrently arenas of their own, up to eight per core,
/// each holding on to freed memory: for a daemon of a few threads that mostly waits, two arenas
/// keep its memory small at no measurable cost. `MALLOC_ARENA_MAX` set by the user wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only tunes the allocator; it is thread-safe and takes plain integers.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// What a signal asks of the daemon.
enum Signal {
    Stop,
    Reload,
}

/// SIGINT and SIGTERM stop; SIGHUP reloads (on Unix; elsewhere Ctrl-C stops, nothing reloads).
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
                hangup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => { tracing::info!("SIGINT received"); Signal::Stop }
                _ = self.terminate.recv() => { tracing::info!("SIGTERM received"); Signal::Stop }
                _ = self.hangup.recv() => { tracing::info!("SIGHUP received: reading the setup again"); Signal::Reload }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop
        }
    }
}

/// One running daemon: its stop switch and its task.
struct Generation {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), DaemonError>>,
}

impl Generation {
    /// Starts a daemon on `config` and waits until it listens, or until it fails to start.
    async fn start(
        config: &Arc<Config>,
        workflows: &[Arc<Workflow>],
        clock: &Arc<dyn Clock>,
    ) -> anyhow::Result<Generation> {
        let (stop, stopped) = watch::channel(false);
        let (ready, listening) = oneshot::channel::<SocketAddr>();
        let mut task = tokio::spawn(daemon::serve_shared(
            Arc::clone(config),
            workflows.to_vec(),
            Arc::clone(clock),
            stopped,
            Some(ready),
        ));
        if listening.await.is_ok() {
            return Ok(Generation { stop, task });
        }
        // `serve` dropped the sender without listening: it returns why.
        match (&mut task).await {
            Ok(Err(err)) => Err(err.into()),
            Ok(Ok(())) => Err(anyhow::anyhow!("the daemon stopped before it listened")),
            Err(join) => Err(anyhow::anyhow!("the daemon task failed: {join}")),
        }
    }

    /// Stops it: nothing new is taken, work in flight gets the shutdown grace.
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(result) => Ok(result?),
            Err(join) => Err(anyhow::anyhow!("the daemon task failed: {join}")),
        }
    }
}

async fn supervise(
    config_path: &Path,
    mut config: Arc<Config>,
    workflows: Vec<Workflow>,
) -> anyhow::Result<Outcome> {
    let mut workflows = crate::workflow::shared(workflows);
    let mut signals = Signals::new()?;
    // One clock for every generation: a reload does not move the daemon's time.
    let clock = engine_clock();
    let mut running = Generation::start(&config, &workflows, &clock).await?;
    loop {
        let signal = tokio::select! {
            signal = signals.next() => signal,
            // The daemon stopped on its own: only a failure does that.
            finished = &mut running.task => {
                return match finished {
                    Ok(result) => result.map(|()| Outcome::Success).map_err(Into::into),
                    Err(join) => Err(anyhow::anyhow!("the daemon task failed: {join}")),
                };
            }
        };
        match signal {
            Signal::Stop => {
                running.stop().await?;
                return Ok(Outcome::Success);
            }
            Signal::Reload => {
                // Time zones too are read again (after a tzdata update); the running
                // workflows keep the rules they were loaded with.
                crate::workflow::zone::Zone::forget_loaded();
                let (new_config, new_workflows) = match load_setup(config_path) {
                    Ok(Setup { config, workflows }) => {
                        (Arc::new(config), crate::workflow::shared(workflows))
                    }
                    Err(problems) => {
                        for problem in &problems {
                            tracing::error!("reload refused: {problem}");
                        }
                        tracing::warn!(
                            problems = problems.len(),
                            "reload refused: the setup has problems; the running workflows are kept unchanged"
                        );
                        continue;
                    }
                };
                if new_config.engine.worker_threads != config.engine.worker_threads {
                    tracing::warn!(
                        "engine.worker_threads changed: it takes effect at the next start, not on reload"
                    );
                }
                if let Err(err) = running.stop().await {
                    tracing::warn!(error = %err, "the previous setup stopped with an error");
                }
                running = match Generation::start(&new_config, &new_workflows, &clock).await {
                    Ok(started) => {
                        tracing::info!(
                            workflows = new_workflows.len(),
                            "reloaded: the new setup is running"
                        );
                        config = new_config;
                        workflows = new_workflows;
                        started
                    }
                    Err(err) => {
                        tracing::error!(
                            error = %err,
                            "reload refused: the new setup cannot start; starting the previous one again"
                        );
                        Generation::start(&config, &workflows, &clock).await?
                    }
                };
            }
        }
    }
}

/// Debug builds only: an RFC 3339 time the daemon's clock starts at (then moves with real
/// time), so the integration tests can put the daemon weeks ahead. Release builds never read it.
#[cfg(debug_assertions)]
const TEST_NOW_VAR: &str = "SATFLOW_TEST_NOW";

fn engine_clock() -> Arc<dyn Clock> {
    #[cfg(debug_assertions)]
    if let Ok(text) = std::env::var(TEST_NOW_VAR) {
        match chrono::DateTime::parse_from_rfc3339(text.trim()) {
            Ok(start) => return Arc::new(crate::clock::JumpClock::new(start.to_utc())),
            Err(e) => tracing::warn!(
                "{TEST_NOW_VAR} ignored: {e} (expected an RFC 3339 time, e.g. 2026-12-10T09:00:00Z)"
            ),
        }
    }
    Arc::new(SystemClock)
}
