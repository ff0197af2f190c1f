//! `satflow trigger WORKFLOW [--wait]`: queue a manual run for the daemon, or run it here.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Outcome, Setup, load_setup, print_problems, runtime};
use crate::clock::{Clock, SystemClock};
use crate::engine::daemon::{Workers, workers};
use crate::store::{RunStatus, Store};

#[derive(Debug, clap::Args)]
pub struct TriggerArgs {
    /// The workflow to run (its `name`)
    pub workflow: String,
    /// Run it in the foreground and wait for the outcome, instead of leaving it to the daemon
    #[arg(long)]
    pub wait: bool,
    /// Who proposes this run (a dashboard user): they cannot approve its steps
    #[arg(long = "as", value_name = "NAME")]
    pub proposer: Option<String>,
}

pub fn run(config_path: &Path, args: &TriggerArgs) -> anyhow::Result<Outcome> {
    let Setup { config, workflows } = match load_setup(config_path) {
        Ok(setup) => setup,
        Err(problems) => {
            print_problems(&problems);
            return Ok(Outcome::UserError);
        }
    };
    if !workflows.iter().any(|w| w.name == args.workflow) {
        let names: Vec<&str> = workflows.iter().map(|w| w.name.as_str()).collect();
        eprintln!(
            "error: there is no workflow named `{}`; workflows: {}",
            args.workflow,
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        );
        return Ok(Outcome::UserError);
    }
    runtime()?.block_on(async move {
        let store = Store::open(&config.database).await?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let now = clock.now();
        if let Some(proposer) = &args.proposer
            && !store.user_names().await?.contains(proposer)
        {
            eprintln!(
                "error: --as {proposer}: there is no user `{proposer}` (see `satflow user list`)"
            );
            return Ok(Outcome::UserError);
        }
        let key = format!("{}-{}", now.timestamp_millis(), std::process::id());
        let id = store
            .queue_manual_run(
                &args.workflow,
                &key,
                args.proposer.as_deref(),
                &crate::treasury::audit::cli_actor(),
                now,
            )
            .await?
            .expect("a fresh manual key is never taken");
        println!("queued run {id} of workflow {}", args.workflow);
        if !args.wait {
            return Ok(Outcome::Success);
        }
        let (stop, stopped) = watch::channel(false);
        let owner = format!("{}-trigger-{}", std::process::id(), now.timestamp_millis());
        let Workers {
            dispatcher, runner, ..
        } = workers(
            &std::sync::Arc::new(config),
            workflows,
            &store,
            clock,
            owner,
        )?;
        let d = tokio::spawn(dispatcher.run(stopped.clone()));
        let r = tokio::spawn(runner.run(stopped));
        let status = loop {
            let run = store.run(id).await?.expect("the run just queued exists");
            if run.status.is_finished() {
                break run;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let _ = stop.send(true);
        let _ = tokio::join!(d, r);
        super::runs::print_run(&store, &status).await?;
        store.close().await;
        Ok(if status.status == RunStatus::Succeeded {
            Outcome::Success
        } else {
            Outcome::Failure
        })
    })
}
