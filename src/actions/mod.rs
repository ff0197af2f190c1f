//! The actions a workflow step can `uses:`, one file each: its typed parameters and how they are
//! read and checked, its outputs (`steps.<id>.…`), what the step does, and the effect it queues.
//!
//! A step never calls the outside world itself: it decides, and returns a [`StepOutcome`] whose
//! effects (typed outbox payloads, see `outbox::Effect`) commit with its result. Nothing here
//! imports the runner; the runner dispatches to an action through [`Action::perform`].
//!
//! Adding an action: write its file (a type implementing [`ActionStep`]) and add one line to the
//! `registry!` below.

use std::future::Future;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::clients::Clients;
use crate::clock::Clock;
use crate::config::Config;
use crate::exchanges::Processor;
use crate::expr::render;
use crate::notify::email::Mailer;
use crate::pocket::PocketClient;
use crate::source::MapReader;
use crate::store::{NewItem, NewWithdrawal, Reservation, RunRow, StepStatus, Store};

pub mod effects;
pub mod read;

pub use read::ActionReader;

/// A value given literally (checked now) or as a template (rendered and checked when the step runs).
#[derive(Debug, Clone, PartialEq)]
pub enum Param<T> {
    Value(T),
    Template(String),
}

impl<T: Clone> Param<T> {
    /// The value, rendering a template with `ctx` and parsing what it gives.
    pub fn resolve<E: std::fmt::Display>(
        &self,
        env: &minijinja::Environment<'_>,
        ctx: &Value,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Result<T, String> {
        match self {
            Param::Value(v) => Ok(v.clone()),
            Param::Template(source) => {
                let text = render(env, source, ctx)?;
                parse(text.trim())
                    .map_err(|e| format!("\"{}\" (from the template): {e}", text.trim()))
            }
        }
    }
}

/// `true`/`false`, or an expression decided when the step runs (`active:` of an order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Fixed(bool),
    Expression(String),
}

/// What executing one step decided, before it is recorded: its status and output, and the
/// effects it causes (outbox items committed with it).
pub struct StepOutcome {
    pub status: StepStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub effects: Vec<NewItem>,
    /// An address handed out by the step, committed with it.
    pub reservation: Option<Reservation>,
    /// A withdrawal planned by the step, committed with it.
    pub withdrawal: Option<NewWithdrawal>,
}

impl StepOutcome {
    pub fn failed(error: impl Into<String>) -> Self {
        StepOutcome {
            status: StepStatus::Failed,
            output: None,
            error: Some(error.into()),
            effects: Vec::new(),
            reservation: None,
            withdrawal: None,
        }
    }

    pub fn succeeded(output: Value, effects: Vec<NewItem>) -> Self {
        StepOutcome {
            status: StepStatus::Succeeded,
            output: Some(output),
            error: None,
            effects,
            reservation: None,
            withdrawal: None,
        }
    }

    /// The step waits for `effect`; its result becomes the step's output.
    pub fn waiting(effect: NewItem) -> Self {
        StepOutcome {
            status: StepStatus::Waiting,
            output: None,
            error: None,
            effects: vec![effect],
            reservation: None,
            withdrawal: None,
        }
    }

    /// A step whose `if:` was false: each of its outputs as none.
    pub fn skipped(uses: &str) -> Self {
        StepOutcome {
            status: StepStatus::Skipped,
            output: Some(skipped_output(uses)),
            error: None,
            effects: Vec::new(),
            reservation: None,
            withdrawal: None,
        }
    }
}

/// What a skipped step shows to later steps: each of its outputs, as none.
pub fn skipped_output(uses: &str) -> Value {
    let mut out: Map<String, Value> = outputs(uses)
        .iter()
        .map(|o| (o.to_string(), Value::Null))
        .collect();
    out.insert("skipped".into(), Value::Bool(true));
    Value::Object(out)
}

/// What a step may use while it decides: the daemon's parts and the run it belongs to.
pub struct StepCx<'a> {
    pub store: &'a Store,
    pub config: &'a Arc<Config>,
    pub pocket: Option<&'a PocketClient>,
    /// The clients the daemon built at start (each Lightning node, its macaroon read once).
    pub clients: &'a Clients,
    pub clock: &'a Arc<dyn Clock>,
    /// The Lightning node the named workflow's `pocket.order` pays out to, if it pays by
    /// Lightning (read from the workflows by the runner, so actions need not know them).
    pub declared_node: &'a (dyn Fn(&str) -> Option<String> + Sync),
    pub mailer: Option<&'a Mailer>,
    pub env: &'a minijinja::Environment<'static>,
    /// The exchange state machine, for a step that reads an exchange back (`pocket.refresh`).
    pub processor: &'a (dyn Fn() -> Processor + Sync),
    pub run: &'a RunRow,
    pub step_id: &'a str,
    /// `event`, `steps`, `run` and `workflow`, as expressions and templates see them.
    pub ctx: &'a Value,
}

impl StepCx<'_> {
    /// The idempotency key of the step's effect.
    pub fn key(&self) -> String {
        format!("run/{}/step/{}", self.run.id, self.step_id)
    }

    /// The run and step that wait for the effect.
    pub fn waiter(&self) -> Option<(i64, String)> {
        Some((self.run.id, self.step_id.to_string()))
    }

    /// A parameter's value now (a template rendered with the run's context).
    pub fn param<T: Clone, E: std::fmt::Display>(
        &self,
        param: &Param<T>,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Result<T, String> {
        param.resolve(self.env, self.ctx, parse)
    }
}

/// One action: its name, its outputs, how its `with:` is read, and what its step does.
pub trait ActionStep: Sized {
    /// What `uses:` names it.
    const NAME: &'static str;
    /// What it makes available as `steps.<id>.<output>`.
    const OUTPUTS: &'static [&'static str];
    /// Reads and checks `with:` (the reader reports every problem with its position).
    fn read(r: &mut ActionReader<'_, '_>, m: &mut MapReader<'_>) -> Option<Self>;
    /// Decides what the step does. Effects are returned, not performed.
    fn perform(&self, cx: &StepCx<'_>) -> impl Future<Output = StepOutcome> + Send;
}

macro_rules! registry {
    ($($variant:ident($module:ident::$ty:ident)),* $(,)?) => {
        $(pub mod $module;)*

        pub use self::{$($module::$ty),*};

        #[derive(Debug, Clone)]
        pub enum Action {
            $($variant($module::$ty)),*
        }

        /// How many actions there are.
        const COUNT: usize = [$(stringify!($variant)),*].len();

        /// Every action name, for "accepted: …" messages.
        pub const NAMES: [&str; COUNT] = [$(<$module::$ty as ActionStep>::NAME),*];

        /// What each action makes available as `steps.<id>.<output>`.
        pub fn outputs(uses: &str) -> &'static [&'static str] {
            $(if uses == <$module::$ty as ActionStep>::NAME {
                return <$module::$ty as ActionStep>::OUTPUTS;
            })*
            &[]
        }

        /// Reads the `with:` of the action `uses` (one of [`NAMES`]).
        fn read_action(
            uses: &str,
            r: &mut ActionReader<'_, '_>,
            m: &mut MapReader<'_>,
        ) -> Option<Action> {
            $(if uses == <$module::$ty as ActionStep>::NAME {
                return <$module::$ty as ActionStep>::read(r, m).map(Action::$variant);
            })*
            None
        }

        impl Action {
            /// Decides what the step does. Effects are returned, not performed.
            pub async fn perform(&self, cx: &StepCx<'_>) -> StepOutcome {
                match self {
                    $(Action::$variant(a) => a.perform(cx).await),*
                }
            }
        }
    };
}

// The registration of every action, in the order `accepted: …` lists them.
registry! {
    PocketOrder(pocket_order::PocketOrder),
    PocketPayout(pocket_payout::PocketPayout),
    PocketRefresh(pocket_refresh::PocketRefresh),
    WalletAddress(wallet_address::WalletAddress),
    Withdraw(withdraw::Withdraw),
    PriceQuote(price_quote::PriceQuote),
    Email(email::Email),
    HttpPost(http_post::HttpPost),
    Notify(notify::Notify),
}
