//! `satflow check`: every problem in satflow.yaml and the workflows (on stdout: they are its
//! result), or a one-line summary.

use std::path::Path;

use super::{Outcome, Setup, load_setup, write_problems};

pub fn run(config_path: &Path) -> anyhow::Result<Outcome> {
    match load_setup(config_path) {
        Ok(Setup { config, workflows }) => {
            let problems = approvers_problems(&config, &workflows)?;
            if !problems.is_empty() {
                write_problems(&mut std::io::stdout().lock(), &problems)?;
                return Ok(Outcome::UserError);
            }
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

/// Each `approval.approvers` name that is not a user, when the database exists (it is not
/// created for a check); without one, a warning that the names were not checked.
fn approvers_problems(
    config: &crate::config::Config,
    workflows: &[crate::workflow::Workflow],
) -> anyhow::Result<Vec<crate::source::Diagnostic>> {
    let rules: Vec<_> = workflows
        .iter()
        .flat_map(|w| {
            w.steps
                .iter()
                .filter_map(move |s| s.approval.as_ref().map(|a| (w, s, a)))
        })
        .collect();
    if rules.is_empty() {
        return Ok(Vec::new());
    }
    // A SQLite file not made yet holds no users (opening it would create it); PostgreSQL is
    // asked.
    if let crate::config::Database::Sqlite(path) = &config.database
        && !path.exists()
    {
        eprintln!(
            "warning: the approvers were not checked against the users: there is no database at {} yet",
            path.display()
        );
        return Ok(Vec::new());
    }
    let users = super::runtime()?.block_on(async {
        let store = crate::store::Store::open(&config.database).await?;
        let users = store.user_names().await;
        store.close().await;
        anyhow::Ok(users?)
    })?;
    let mut problems = Vec::new();
    for (w, s, a) in rules {
        for (i, (name, pos)) in a.approvers.iter().zip(&a.approver_pos).enumerate() {
            if !users.contains(name) {
                problems.push(crate::source::Diagnostic {
                    path: w.path.clone(),
                    pos: *pos,
                    message: format!(
                        "steps[{}].approval.approvers[{i}]: there is no user `{name}`; users: {} (add one with `satflow user add`)",
                        s.index,
                        if users.is_empty() { "none".to_string() } else { users.join(", ") }
                    ),
                });
            }
        }
    }
    Ok(problems)
}
