//! `satflow run`: the daemon, until SIGINT or SIGTERM.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

use super::{Outcome, Setup, load_setup, print_problems, runtime};
use crate::engine::clock::SystemClock;
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
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = stop.send(true);
        });
        daemon::serve(config, workflows, Arc::new(SystemClock), stopped, None).await?;
        Ok(Outcome::Success)
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
