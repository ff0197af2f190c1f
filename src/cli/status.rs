//! `satflow status`: the instances alive, next fires, recent runs, unsettled exchanges, held-back alerts, the outbox
//! backlog and dead letters.

use std::path::Path;

use serde_json::json;

use super::{Outcome, Setup, load_setup, print_problems, runtime};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print one JSON document instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(config_path: &Path, args: &StatusArgs) -> anyhow::Result<Outcome> {
    let Setup { config, workflows } = match load_setup(config_path) {
        Ok(setup) => setup,
        Err(problems) => {
            print_problems(&problems);
            return Ok(Outcome::UserError);
        }
    };
    runtime()?.block_on(async move {
        let store = Store::open(&config.database).await?;
        let now = crate::clock::system_now();
        let mut next: Vec<(String, chrono::DateTime<chrono::Utc>)> = workflows
            .iter()
            .filter_map(|w| Some((w.name.clone(), w.schedule.as_ref()?.next_after(now)?.to_utc())))
            .collect();
        crate::sorting::sort_by_key(&mut next, |(_, t)| *t);
        let runs = store.recent_runs(10).await?;
        let (pending, dead) = store.outbox_backlog().await?;
        let held_back = store.alerts_held_back().await?;
        let (_, unrecognized, _) = store.inbox_backlog().await?;
        let open_exchanges: Vec<_> = store
            .exchanges(500)
            .await?
            .into_iter()
            .filter(|e| !crate::store::is_final(e.state))
            .collect();
        let instances = store
            .live_instances(now, crate::instance::ALIVE_WITHIN)
            .await?;
        let expect_alerts = store.expect_alerts(50).await?;
        let mut expected = Vec::new();
        for (workflow, e) in crate::expect::declared(&workflows) {
            let order = store.order_for_workflow(&workflow).await?;
            let line = match &order {
                None => format!("{workflow}: expects {}; no order yet", e.describe()),
                Some(o) => {
                    let times: Vec<_> = store
                        .exchanges(i64::MAX)
                        .await?
                        .into_iter()
                        .filter(|x| x.order_id.as_deref() == Some(o.id.as_str()))
                        .filter(|x| {
                            matches!(
                                x.state,
                                crate::pocket::types::ExchangeState::Executed
                                    | crate::pocket::types::ExchangeState::Settled
                            )
                        })
                        .map(|x| x.exchange.executed_on.unwrap_or(x.first_seen_at))
                        .collect();
                    let last = times.iter().max().map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string());
                    let current = e.windows(o.created_at, now).into_iter().last();
                    format!(
                        "{workflow}: expects {}; last purchase {}{}",
                        e.describe(),
                        last.unwrap_or_else(|| "none yet".into()),
                        current
                            .map(|w| format!("; this window's payment is due by {}", w.deadline.format("%Y-%m-%d %H:%M UTC")))
                            .unwrap_or_default()
                    )
                }
            };
            expected.push(line);
        }
        let dead_items: Vec<_> = store
            .outbox_items(200)
            .await?
            .into_iter()
            .filter(|i| i.status == crate::store::OutboxStatus::Dead)
            .collect();
        if args.json {
            let mut run_docs = Vec::new();
            for run in &runs {
                run_docs.push(super::runs::run_json(&store, run).await?);
            }
            let doc = json!({
                "instances": instances.iter().map(crate::instance::json).collect::<Vec<_>>(),
                "next_fires": next.iter().map(|(w, t)| json!({"workflow": w, "at": t.to_rfc3339()})).collect::<Vec<_>>(),
                "runs": run_docs,
                "unsettled_exchanges": open_exchanges.iter().map(|e| json!({
                    "id": e.id, "order_id": e.order_id, "state": e.state.name(),
                    "updated_at": e.updated_at.to_rfc3339(),
                    "next_check_at": e.next_check_at.map(|t| t.to_rfc3339()),
                })).collect::<Vec<_>>(),
                "webhooks": { "unrecognized_kept": unrecognized },
                "expected_purchases": expected,
                "expect_alerts": expect_alerts.iter().map(|a| json!({
                    "workflow": a.workflow, "kind": a.kind, "ref": a.reference,
                    "message": a.message, "raised_at": a.raised_at.to_rfc3339(),
                })).collect::<Vec<_>>(),
                "alerts_held_back": held_back.iter().map(|(kind, count)| json!({"kind": kind, "count": count})).collect::<Vec<_>>(),
                "outbox": {
                    "pending": pending,
                    "dead": dead,
                    "dead_items": dead_items.iter().map(|i| json!({
                        "id": i.id, "kind": i.kind, "idempotency_key": i.key, "last_error": i.last_error,
                    })).collect::<Vec<_>>(),
                },
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        } else {
            println!("Instances alive:");
            for i in &instances {
                println!(
                    "  {}  {} pid {} on {}, up since {}, last beat {}",
                    i.id,
                    i.host,
                    i.pid,
                    i.listen,
                    i.started_at.to_rfc3339(),
                    i.heartbeat_at.to_rfc3339()
                );
            }
            if instances.is_empty() {
                println!("  (none: no daemon is running on this database)");
            }
            println!("Next fires:");
            for (w, t) in &next {
                println!("  {t}  {w}");
            }
            if next.is_empty() {
                println!("  (no scheduled workflows)");
            }
            println!("Recent runs:");
            for r in &runs {
                println!("  {:>6}  {:<24} {:<9} {}", r.id, r.workflow, r.trigger, r.status);
            }
            if runs.is_empty() {
                println!("  (none yet)");
            }
            println!("Unsettled exchanges:");
            for e in &open_exchanges {
                println!("  {}  {:<11} since {}", e.id, e.state.name(), e.updated_at.to_rfc3339());
            }
            if open_exchanges.is_empty() {
                println!("  (none)");
            }
            if unrecognized > 0 {
                println!("Webhooks satflow did not understand (newest kept): {unrecognized}");
            }
            for (kind, count) in &held_back {
                println!("Alerts held back this hour: {count} {kind} (one summary email follows)");
            }
            if !expected.is_empty() {
                println!("Expected purchases:");
                for line in &expected {
                    println!("  {line}");
                }
                for a in &expect_alerts {
                    println!("  {} {}: {} (raised {})", a.workflow, a.kind, a.message, a.raised_at.to_rfc3339());
                }
            }
            println!("Outbox: {pending} pending, {dead} dead");
            for i in &dead_items {
                println!(
                    "  dead {:>6}  {}  {}  (satflow outbox retry {})",
                    i.id,
                    i.kind,
                    i.last_error.as_deref().unwrap_or(""),
                    i.id
                );
            }
        }
        store.close().await;
        Ok(Outcome::Success)
    })
}
