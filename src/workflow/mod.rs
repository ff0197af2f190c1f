//! Workflows: the YAML files in which users write their stacking plan — what starts a workflow
//! (`on`), and the steps it runs in order.
//!
//! Loading a workflow checks it completely against satflow.yaml (every action's parameters,
//! every expression, every name it refers to) and reports every problem with its position. A
//! `Workflow` value is only produced for a file without problems; running it is the engine's job.

pub mod actions;
/// The expression language lives below the actions (they render templates), so workflows and
/// actions share it without importing each other.
pub use crate::expr;
pub mod schedule;
pub mod zone;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::Names;
use crate::source::reader::{describe, did_you_mean, list_or_one, string};
use crate::source::{Ctx, Diagnostics, Env, Kind, MapReader, Node, Pos, load_file};

/// The events are the exchange processor's; a workflow names the ones it starts on.
pub use crate::exchanges::EventKind;
pub use actions::{Action, Condition, Param};
pub use schedule::{CatchUp, Schedule};

#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    pub path: PathBuf,
    pub schedule: Option<Schedule>,
    pub events: Vec<EventKind>,
    /// Which exchanges the `events` start it for (`on.payout`, `on.if`).
    pub exchanges: EventFilter,
    pub steps: Vec<Step>,
}

/// Which exchanges an event-started workflow is for: `on.payout` (the payout kind of the
/// exchange's order) and `on.if` (an expression over `event`); both must hold. Empty: every
/// exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub payout: Option<PayoutKind>,
    pub condition: Option<String>,
}

/// How an order pays out, as `on.payout` and `event.payout_kind` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutKind {
    Lightning,
    OnChain,
}

impl PayoutKind {
    pub const ALL: [PayoutKind; 2] = [PayoutKind::Lightning, PayoutKind::OnChain];

    pub fn name(self) -> &'static str {
        match self {
            PayoutKind::Lightning => "lightning",
            PayoutKind::OnChain => "onchain",
        }
    }

    /// From the payout kind the store keeps for an order (`lightning`, `xpub`, `address`).
    pub fn of_order(stored: &str) -> Option<PayoutKind> {
        match stored {
            "lightning" => Some(PayoutKind::Lightning),
            "xpub" | "address" => Some(PayoutKind::OnChain),
            _ => None,
        }
    }
}

/// Whether the exchange event `event` (its context, as workflows see it in `event`) starts
/// `workflow`, by the workflow's `on.payout` and `on.if`. `order_payout` is the payout kind
/// the store keeps for the exchange's order (`None`: an order satflow did not make).
///
/// An `on.if` that cannot be evaluated starts the run (logged): a condition `check` accepted
/// that fails on one event must not silently drop, say, a Lightning payout; the run's steps
/// still decide what to do.
pub fn starts_for(
    workflow: &Workflow,
    event: &serde_json::Value,
    order_payout: Option<&str>,
    env: &minijinja::Environment<'_>,
) -> bool {
    let kind = order_payout.and_then(PayoutKind::of_order);
    let filter = &workflow.exchanges;
    if let Some(wanted) = filter.payout
        && kind != Some(wanted)
    {
        return false;
    }
    let Some(condition) = &filter.condition else {
        return true;
    };
    let mut event = event.clone();
    if let Some(map) = event.as_object_mut() {
        map.insert(
            "payout_kind".into(),
            kind.map_or(serde_json::Value::Null, |k| k.name().into()),
        );
    }
    match expr::eval_condition(env, condition, &serde_json::json!({ "event": event })) {
        Ok(yes) => yes,
        Err(err) => {
            tracing::warn!(workflow = %workflow.name, %err, "on.if cannot be evaluated for this exchange; the workflow runs");
            true
        }
    }
}

/// The workflows as the daemon's parts hold them: each once in memory, however many parts read
/// it (10,000 workflows are kept once, not once per part).
pub fn shared(workflows: Vec<Workflow>) -> Vec<std::sync::Arc<Workflow>> {
    workflows.into_iter().map(std::sync::Arc::new).collect()
}

/// The workflows the processor starts runs of: those that listen for the event's kind and whose
/// `on.payout` and `on.if` hold, in the order they were loaded.
impl<W: std::borrow::Borrow<Workflow> + Send + Sync> crate::exchanges::Listeners for Vec<W> {
    fn starting(
        &self,
        kind: EventKind,
        context: &serde_json::Value,
        order_payout: Option<&str>,
        env: &minijinja::Environment<'_>,
    ) -> Vec<String> {
        self.iter()
            .map(|w| w.borrow())
            .filter(|w| w.events.contains(&kind) && starts_for(w, context, order_payout, env))
            .map(|w| w.name.clone())
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub uses: &'static str,
    pub action: Action,
    /// `if:` — the step is skipped when this is false.
    pub condition: Option<String>,
    /// `approval:` — its effects wait for these approvals.
    pub approval: Option<crate::treasury::approvals::ApprovalRule>,
    /// Where the step's `uses:` is written, for problems found across steps or workflows.
    pub pos: Pos,
    /// The step's place in the file's list, as in `steps[N]` of messages.
    pub index: usize,
}

/// Loads every workflow file, checking each against the configuration's `names` and the
/// workflow names against each other. Returns the workflows that have no problem.
pub fn load_all(
    files: &[PathBuf],
    names: &Names,
    env: &dyn Env,
    diags: &mut Diagnostics,
) -> Vec<Workflow> {
    let jinja = expr::environment();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    // Two orders rotating through one xpub would be paid to the same addresses.
    let mut payout_wallets: BTreeMap<String, String> = BTreeMap::new();
    // Wallets satflow hands addresses out from itself: (file, where, field, wallet).
    let mut rotated: Vec<(PathBuf, Pos, String, String)> = Vec::new();
    let mut out = Vec::new();
    for path in files {
        let before = diags.len();
        let Some(root) = load_file(path, env, diags) else {
            continue;
        };
        let mut ctx = Ctx { path, diags };
        let Some((workflow, name_pos)) = read_workflow(path, &root, names, &jinja, &mut ctx) else {
            continue;
        };
        if let Some(first) = seen.get(&workflow.name) {
            ctx.error(
                name_pos,
                format!(
                    "name: workflow name `{}` is already used by {}; names must be unique (set `name:` in one of them)",
                    workflow.name,
                    first.display()
                ),
            );
            continue;
        }
        seen.insert(workflow.name.clone(), path.clone());
        for step in &workflow.steps {
            match &step.action {
                Action::WalletAddress(w) => {
                    rotated.push((
                        path.clone(),
                        step.pos,
                        format!("steps[{}].with.wallet", step.index),
                        w.wallet.clone(),
                    ));
                }
                Action::Withdraw(w) => {
                    rotated.push((
                        path.clone(),
                        step.pos,
                        format!("steps[{}].with.to.wallet", step.index),
                        w.to_wallet.clone(),
                    ));
                }
                _ => {}
            }
            if let Action::PocketOrder(order) = &step.action
                && let actions::Payout::Wallet { wallet, .. } = &order.payout
            {
                match payout_wallets.get(wallet) {
                    Some(other) => ctx.error(
                        order.payout_pos,
                        format!("steps[{}].with.payout.wallet: the order of workflow `{other}` already pays out to wallet `{wallet}`; two orders rotating through one key would reuse addresses — give each order its own wallet (another account of your seed)", step.index),
                    ),
                    None => {
                        payout_wallets.insert(wallet.clone(), workflow.name.clone());
                    }
                }
            }
        }
        if diags.len() == before {
            out.push(workflow);
        }
    }
    // Pocket rotates through its payout wallet on its own count: satflow handing out addresses
    // from the same key would pay twice into the same address sooner or later.
    for (path, pos, field, wallet) in rotated {
        if let Some(order_workflow) = payout_wallets.get(&wallet) {
            diags.push(
                &path,
                pos,
                format!("{field}: wallet `{wallet}` is the payout wallet of the Pocket order of workflow `{order_workflow}`, which rotates through its addresses by itself; addresses from it would be reused — use another wallet (another account of your seed)"),
            );
            out.retain(|w| w.path != path);
        }
    }
    out
}

fn read_workflow(
    path: &Path,
    root: &Node,
    names: &Names,
    jinja: &minijinja::Environment<'static>,
    ctx: &mut Ctx<'_>,
) -> Option<(Workflow, Pos)> {
    let mut m = MapReader::new(root, "workflow", ctx)?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("workflow")
        .to_string();
    let (name, name_pos) = match m.get("name") {
        Some(n) => (string(n, "name", ctx).unwrap_or(stem), n.pos),
        None => (stem, Pos::START),
    };
    if !is_identifier(&name, true) {
        ctx.error(
            name_pos,
            format!("name: {} is not a usable workflow name; use letters, digits, `-`, `_` and `.` (it appears in commands and the database)", describe(&name)),
        );
    }
    let (schedule, events, exchanges) = match m.get("on") {
        Some(n) => read_on(n, jinja, ctx),
        None => (None, Vec::new(), EventFilter::default()),
    };
    let steps = match m.required(
        "steps",
        "write the list of steps, e.g. steps: [{ uses: price.quote, with: { currency: chf } }]",
        ctx,
    ) {
        Some(n) => read_steps(n, names, jinja, ctx),
        None => Vec::new(),
    };
    m.finish(ctx);
    Some((
        Workflow {
            name,
            path: path.to_path_buf(),
            schedule,
            events,
            exchanges,
            steps,
        },
        name_pos,
    ))
}

fn read_on(
    node: &Node,
    jinja: &minijinja::Environment<'static>,
    ctx: &mut Ctx<'_>,
) -> (Option<Schedule>, Vec<EventKind>, EventFilter) {
    let Some(mut m) = MapReader::new(node, "on", ctx) else {
        return (None, Vec::new(), EventFilter::default());
    };
    let schedule = m.get("schedule").and_then(|n| read_schedule(n, ctx));
    let mut events = Vec::new();
    if let Some(n) = m.get("event") {
        for item in list_or_one(n) {
            let Some(text) = string(item, "on.event", ctx) else {
                continue;
            };
            match EventKind::ALL.into_iter().find(|e| e.name() == text) {
                Some(kind) if !events.contains(&kind) => events.push(kind),
                Some(_) => ctx.error(
                    item.pos,
                    format!("on.event: {} is listed twice", describe(&text)),
                ),
                None => {
                    let accepted: Vec<&str> = EventKind::ALL.iter().map(|e| e.name()).collect();
                    let hint = did_you_mean(&text, &accepted);
                    ctx.error(
                        item.pos,
                        format!(
                            "on.event: {} is not an event; {hint}accepted: {}",
                            describe(&text),
                            accepted.join(", ")
                        ),
                    );
                }
            }
        }
    }
    if !m.has("schedule") && !m.has("event") {
        ctx.error(
            m.pos,
            "on: write `schedule: { cron: … }` and/or `event: exchange.executed`; leave `on` out for a workflow you only start with `satflow trigger`",
        );
    }
    let mut exchanges = EventFilter::default();
    if let Some(n) = m.get("payout")
        && let Some(text) = string(n, "on.payout", ctx)
    {
        match PayoutKind::ALL.into_iter().find(|k| k.name() == text) {
            Some(kind) => exchanges.payout = Some(kind),
            None => ctx.error(
                n.pos,
                format!(
                    "on.payout: {} is not a payout kind; accepted: lightning (exchanges of orders paid out over Lightning), onchain (to a wallet)",
                    describe(&text)
                ),
            ),
        }
    }
    if let Some(n) = m.get("if")
        && let Some(text) = string(n, "on.if", ctx)
    {
        match expr::check_event_condition(jinja, &text) {
            Ok(()) => exchanges.condition = Some(text),
            Err(e) => ctx.error(n.pos, format!("on.if: {e}")),
        }
    }
    if exchanges != EventFilter::default() && !m.has("event") {
        ctx.error(
            m.pos,
            "on: `payout` and `if` say which exchanges an event starts the workflow for; add `event: exchange.executed` (or another exchange event), or remove them",
        );
    }
    m.finish(ctx);
    (schedule, events, exchanges)
}

fn read_schedule(node: &Node, ctx: &mut Ctx<'_>) -> Option<Schedule> {
    let mut m = MapReader::new(node, "on.schedule", ctx)?;
    let cron = m.required(
        "cron",
        "write a cron expression, e.g. cron: \"0 9 * * MON\"",
        ctx,
    );
    let timezone = match m.get("timezone") {
        Some(n) => string(n, "on.schedule.timezone", ctx).and_then(|text| {
            schedule::parse_timezone(&text)
                .map_err(|e| ctx.error(n.pos, format!("on.schedule.timezone: {e}")))
                .ok()
        }),
        None => Some(zone::Zone::utc()),
    };
    let catch_up = match m.get("catch_up") {
        Some(n) => string(n, "on.schedule.catch_up", ctx).and_then(|text| {
            text.parse::<CatchUp>()
                .map_err(|e| ctx.error(n.pos, format!("on.schedule.catch_up: {e}")))
                .ok()
        }),
        None => Some(CatchUp::Once),
    };
    m.finish(ctx);
    let cron = cron?;
    let text = string(cron, "on.schedule.cron", ctx)?;
    // The cron is checked even when the zone or policy is wrong, so every problem shows at once;
    // the placeholders never reach a returned schedule.
    match Schedule::new(
        &text,
        timezone.clone().unwrap_or_else(zone::Zone::utc),
        catch_up.unwrap_or(CatchUp::Once),
    ) {
        Ok(s) => timezone.and(catch_up).map(|_| s),
        Err(e) => {
            ctx.error(cron.pos, format!("on.schedule.cron: {e}"));
            None
        }
    }
}

fn read_steps(
    node: &Node,
    names: &Names,
    jinja: &minijinja::Environment<'static>,
    ctx: &mut Ctx<'_>,
) -> Vec<Step> {
    let Kind::Seq(items) = &node.kind else {
        ctx.error(
            node.pos,
            format!(
                "steps: expected a list of steps (`- uses: …`), found {}",
                node.kind_name()
            ),
        );
        return Vec::new();
    };
    if items.is_empty() {
        ctx.error(
            node.pos,
            "steps: the list is empty; a workflow needs at least one step",
        );
    }
    // Ids first, so a reference to a later step can be told from a typo.
    let ids: Vec<(String, Option<Pos>)> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let written = match &item.kind {
                Kind::Map(entries) => entries
                    .iter()
                    .find(|(k, _)| k.scalar().is_some_and(|s| s.raw == "id"))
                    .and_then(|(_, v)| v.scalar().map(|s| (s.value.clone(), v.pos))),
                _ => None,
            };
            match written {
                Some((id, pos)) => (id, Some(pos)),
                None => (format!("step_{}", i + 1), None),
            }
        })
        .collect();
    let all_ids: Vec<String> = ids.iter().map(|(id, _)| id.clone()).collect();
    let mut earlier: Vec<(String, &'static [&'static str])> = Vec::new();
    let mut steps = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let prefix = format!("steps[{i}]");
        let (id, id_pos) = &ids[i];
        if let Some(pos) = id_pos {
            if !is_identifier(id, false) {
                ctx.error(*pos, format!("{prefix}.id: {} is not a usable id; use letters, digits and `_`, starting with a letter (it is written as steps.ID in expressions)", describe(id)));
            } else if let Some(first) = ids[..i].iter().position(|(other, _)| other == id) {
                ctx.error(*pos, format!("{prefix}.id: `{id}` is already the id of steps[{first}]; step ids must be unique within a workflow"));
            }
        }
        let step = read_step(item, i, &prefix, id, names, jinja, &earlier, &all_ids, ctx);
        if let Some(step) = &step
            && step.uses == "pocket.order"
            && let Some(first) = steps.iter().find(|s: &&Step| s.uses == "pocket.order")
        {
            ctx.error(
                step.pos,
                format!("{prefix}.uses: this workflow already declares its standing order in step `{}`; a workflow has at most one pocket.order (write another workflow for a second order)", first.id),
            );
        }
        if let Some(step) = step {
            earlier.push((step.id.clone(), actions::outputs(step.uses)));
            steps.push(step);
        } else {
            // A step with problems of its own: later references to it are not checked again.
            earlier.push((id.clone(), &[]));
        }
    }
    steps
}

#[allow(clippy::too_many_arguments)]
fn read_step(
    node: &Node,
    index: usize,
    prefix: &str,
    id: &str,
    names: &Names,
    jinja: &minijinja::Environment<'static>,
    earlier: &[(String, &'static [&'static str])],
    all_ids: &[String],
    ctx: &mut Ctx<'_>,
) -> Option<Step> {
    let mut m = MapReader::new(node, prefix, ctx)?;
    m.get("id");
    let uses_node = m.required(
        "uses",
        &format!(
            "write the action to run; accepted: {}",
            actions::NAMES.join(", ")
        ),
        ctx,
    );
    let condition = m.get("if").and_then(|n| {
        let text = string(n, &format!("{prefix}.if"), ctx)?;
        let scope = expr::Scope { earlier, all_ids };
        match expr::check_condition(jinja, &text, &scope) {
            Ok(()) => Some(text),
            Err(e) => {
                ctx.error(n.pos, format!("{prefix}.if: {e}"));
                None
            }
        }
    });
    let approval = m.get("approval").and_then(|n| {
        let scope = expr::Scope { earlier, all_ids };
        crate::treasury::approvals::read(n, prefix, jinja, &scope, ctx)
    });
    let with_node = m.get("with");
    m.finish(ctx);
    let uses_node = uses_node?;
    let uses_text = string(uses_node, &format!("{prefix}.uses"), ctx)?;
    let Some(uses) = actions::NAMES.iter().find(|n| **n == uses_text).copied() else {
        let hint = did_you_mean(&uses_text, &actions::NAMES);
        ctx.error(
            uses_node.pos,
            format!(
                "{prefix}.uses: {} is not an action; {hint}accepted: {}",
                describe(&uses_text),
                actions::NAMES.join(", ")
            ),
        );
        return None;
    };
    let mut reader = actions::ActionReader {
        ctx,
        names,
        env: jinja,
        scope: expr::Scope { earlier, all_ids },
        prefix: format!("{prefix}.with"),
    };
    let action = reader.read(uses, uses_node.pos, with_node, &format!("{prefix}.uses"))?;
    Some(Step {
        id: id.to_string(),
        uses,
        action,
        condition,
        approval,
        pos: uses_node.pos,
        index,
    })
}

/// Names used in commands, keys and expressions. Workflow names may also contain `-`.
fn is_identifier(text: &str, allow_dash: bool) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || (allow_dash && c.is_ascii_digit()))
        && chars.all(|c| {
            c.is_ascii_alphanumeric() || c == '_' || (allow_dash && (c == '-' || c == '.'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoEnv;
    impl Env for NoEnv {
        fn var(&self, _: &str) -> Option<String> {
            None
        }
    }

    /// Loads one workflow file with `text`; the workflow, or the problems' messages.
    fn load(text: &str) -> Result<Workflow, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.yaml");
        std::fs::write(&path, text).unwrap();
        let mut names = Names::default();
        names.nodes.insert("mynode".into(), None);
        names.has_pocket = true;
        let mut diags = Diagnostics::default();
        let mut out = load_all(&[path], &names, &NoEnv, &mut diags);
        if diags.is_empty() {
            Ok(out.remove(0))
        } else {
            Err(diags.sorted().iter().map(|d| d.message.clone()).collect())
        }
    }

    fn event() -> serde_json::Value {
        serde_json::json!({ "name": "exchange.executed", "exchange_id": "x", "order_id": "o", "currency": "CHF", "cost": 50 })
    }

    #[test]
    fn the_lightning_payout_workflow_starts_for_lightning_exchanges_only() {
        let w = load(include_str!("../../workflows/lightning-payout.yaml")).unwrap();
        assert_eq!(w.exchanges.payout, Some(PayoutKind::Lightning));
        let env = expr::environment();
        assert!(starts_for(&w, &event(), Some("lightning"), &env));
        assert!(!starts_for(&w, &event(), Some("xpub"), &env));
        assert!(!starts_for(&w, &event(), Some("address"), &env));
        assert!(
            !starts_for(&w, &event(), None, &env),
            "an order satflow did not make"
        );
    }

    #[test]
    fn on_if_is_an_expression_over_the_event_with_its_payout_kind() {
        let w = load(
            "on:\n  event: exchange.executed\n  if: \"{{ event.payout_kind == 'onchain' and event.cost >= 50 }}\"\nsteps:\n  - uses: pocket.refresh\n",
        )
        .unwrap();
        let env = expr::environment();
        assert!(starts_for(&w, &event(), Some("xpub"), &env));
        assert!(!starts_for(&w, &event(), Some("lightning"), &env));
        let mut small = event();
        small["cost"] = 10.into();
        assert!(!starts_for(&w, &small, Some("xpub"), &env));
        let plain =
            load("on: { event: exchange.executed }\nsteps:\n  - uses: pocket.refresh\n").unwrap();
        assert!(starts_for(&plain, &event(), Some("xpub"), &env));
        assert!(starts_for(&plain, &event(), None, &env));
    }

    #[test]
    fn refusals_name_the_field_and_what_is_accepted() {
        let problems = |text: &str| load(text).unwrap_err().join("\n");
        let p = problems(
            "on: { event: exchange.executed, payout: ln }\nsteps:\n  - uses: pocket.refresh\n",
        );
        assert!(
            p.contains("on.payout: ") && p.contains("accepted: lightning"),
            "{p}"
        );
        let p = problems(
            "on: { event: exchange.executed, if: \"{{ steps.x.y }}\" }\nsteps:\n  - uses: pocket.refresh\n",
        );
        assert!(
            p.contains("on.if: `steps`") && p.contains("sees only `event`"),
            "{p}"
        );
        let p = problems(
            "on: { event: exchange.executed, if: \"{{ event.cost > }}\" }\nsteps:\n  - uses: pocket.refresh\n",
        );
        assert!(
            p.contains("on.if: ") && p.contains("does not compile"),
            "{p}"
        );
        let p = problems(
            "on: { schedule: { cron: \"0 9 * * MON\" }, payout: lightning }\nsteps:\n  - uses: pocket.refresh\n",
        );
        assert!(p.contains("add `event: exchange.executed`"), "{p}");
    }
}
