//! `satflow run`: the daemon, until SIGINT or SIGTERM.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

use super::{Outcome, Setup, load_setup, print_problems, runtime, shutdown_signal};
use crate::clock::{Clock, SystemClock};
use crate::engine::daemon;

pub fn run(config_path: &Path) -> anyhow::Result<Outcome> {
    let Setup { config, workflows } = match load_setup(config_path) {
        Ok(setup) => setup,
        Err(problems) => {
            print_problems(&problems);
            return Ok(Outcome::UserError);
        }
    };
    runtime()?.block_on(async move {
        let (stop, stopped) = watch::channel(false);
        let signal = shutdown_signal();
        tokio::spawn(async move {
            signal.await;
            let _ = stop.send(true);
        });
        daemon::serve(config, workflows, engine_clock(), stopped, None).await?;
        Ok(Outcome::Success)
    })
}

/// Debug builds only: an RFC 3339 time the daemon's clock starts at (then moves with real
/// time), so the integration tests can put the daemon weeks ahead. Release builds never read it.
pub const TEST_NOW_VAR: &str = "SATFLOW_TEST_NOW";

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
