//! `satflow run`: the daemon, until SIGINT or SIGTERM.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

use super::{Outcome, Setup, load_setup, print_problems, runtime, shutdown_signal};
use crate::clock::SystemClock;
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
        daemon::serve(config, workflows, Arc::new(SystemClock), stopped, None).await?;
        Ok(Outcome::Success)
    })
}
