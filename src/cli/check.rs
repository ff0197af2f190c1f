//! `satflow check`: every problem in satflow.yaml and the workflows (on stdout: they are its
//! result), or a one-line summary.

use std::path::Path;

use super::{Outcome, Setup, load_setup, write_problems};

pub fn run(config_path: &Path) -> anyhow::Result<Outcome> {
    match load_setup(config_path) {
        Ok(Setup { workflows, .. }) => {
            let scheduled = workflows.iter().filter(|w| w.schedule.is_some()).count();
            let on_events = workflows.iter().filter(|w| !w.events.is_empty()).count();
            let manual = workflows
                .iter()
                .filter(|w| w.schedule.is_none() && w.events.is_empty())
                .count();
            println!(
                "ok: {} and {} workflow{} ({scheduled} on a schedule, {on_events} on events, {manual} manual only), no problems",
                config_path.display(),
                workflows.len(),
                if workflows.len() == 1 { "" } else { "s" },
            );
            Ok(Outcome::Success)
        }
        Err(problems) => {
            // The problems are what `check` is asked for: its result, on stdout.
            write_problems(&mut std::io::stdout().lock(), &problems)?;
            Ok(Outcome::UserError)
        }
    }
}
