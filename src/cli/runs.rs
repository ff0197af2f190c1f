//! `satflow runs [show ID]`: run history with each step's outcome.

use std::path::Path;

use serde_json::{Value, json};

use super::{Outcome, open_store, runtime};
use crate::store::{RunRow, Store, StoreError};

#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub show: Option<RunsCommand>,
    /// How many runs to list, newest first
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Print one JSON document instead of text
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum RunsCommand {
    /// One run with every step's status, error and output
    Show {
        /// The run's number, as `satflow runs` lists it
        id: i64,
    },
}

pub fn run(config_path: &Path, args: &RunsArgs) -> anyhow::Result<Outcome> {
    runtime()?.block_on(async {
        let Some(store) = open_store(config_path).await? else {
            return Ok(Outcome::UserError);
        };
        let runs = match &args.show {
            Some(RunsCommand::Show { id }) => match store.run(*id).await? {
                Some(run) => vec![run],
                None => {
                    eprintln!("error: there is no run {id}; `satflow runs` lists them");
                    return Ok(Outcome::UserError);
                }
            },
            None => store.recent_runs(i64::from(args.limit)).await?,
        };
        if args.json {
            let mut docs = Vec::new();
            for run in &runs {
                docs.push(run_json(&store, run).await?);
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({ "runs": docs }))?
            );
        } else if args.show.is_some() {
            print_run(&store, &runs[0]).await?;
        } else if runs.is_empty() {
            println!("no runs yet");
        } else {
            for run in &runs {
                println!(
                    "{:>6}  {:<24} {:<9} {:<10} {}",
                    run.id,
                    run.workflow,
                    run.trigger,
                    run.status,
                    run.started_at
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
        Ok(Outcome::Success)
    })
}

/// A run as the `runs --json` contract shows it.
pub async fn run_json(store: &Store, run: &RunRow) -> Result<Value, StoreError> {
    let steps = store.steps(run.id).await?;
    Ok(json!({
        "id": run.id,
        "workflow": run.workflow,
        "trigger": run.trigger,
        "trigger_key": run.trigger_key,
        "status": run.status,
        "created_at": run.created_at.to_rfc3339(),
        "started_at": run.started_at.map(|t| t.to_rfc3339()),
        "finished_at": run.finished_at.map(|t| t.to_rfc3339()),
        "error": run.error,
        "steps": steps.iter().map(|s| json!({
            "id": s.step_id,
            "status": s.status,
            "error": s.error,
            "output": s.output,
        })).collect::<Vec<_>>(),
    }))
}

/// A run and its steps, for people.
pub async fn print_run(store: &Store, run: &RunRow) -> Result<(), StoreError> {
    println!(
        "run {} of {} ({}, {}): {}",
        run.id, run.workflow, run.trigger, run.trigger_key, run.status
    );
    if let Some(error) = &run.error {
        println!("  error: {error}");
    }
    for s in store.steps(run.id).await? {
        let detail = match (&s.error, &s.output) {
            (Some(e), _) => e.clone(),
            (None, Some(o)) => o.to_string(),
            _ => String::new(),
        };
        println!("  {:<20} {:<10} {detail}", s.step_id, s.status);
    }
    Ok(())
}
