//! The table of outcomes of every call satflow makes to Pocket: for each call and each way it
//! can fail, what satflow does about it — try again later (not before `Retry-After`), stop with
//! the reason for the user, read Pocket's state before any retry, or the reaction Pocket
//! documents (a payout already under way is done; a channel Pocket will not open falls back to
//! an invoice).
//!
//! `outcome` is the only place this is decided: the client reports what happened (a `Failure`),
//! the actions act on the `Verdict`. It follows `crate::outcome` (the HTTP status first, then the
//! transport error's predicates, then documented codes) and never looks at error text.
//! `tests/it/outcomes_pocket.rs` drives every cell over real HTTP.

use std::time::Duration;

use super::types::ApiCode;
use crate::outcome::{self, Class};

/// Every call satflow makes to Pocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PocketCall {
    CreateChallenge,
    GetChallenge,
    CreateOrder,
    GetOrder,
    PatchOrder,
    GetExchange,
    /// `PATCH /v1/exchanges/{id}` with an invoice.
    PatchExchangeInvoice,
    /// `PATCH /v1/exchanges/{id}` asking for a channel.
    PatchExchangeChannel,
}

impl PocketCall {
    pub const ALL: [PocketCall; 8] = [
        PocketCall::CreateChallenge,
        PocketCall::GetChallenge,
        PocketCall::CreateOrder,
        PocketCall::GetOrder,
        PocketCall::PatchOrder,
        PocketCall::GetExchange,
        PocketCall::PatchExchangeInvoice,
        PocketCall::PatchExchangeChannel,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PocketCall::CreateChallenge => "POST /v1/challenges",
            PocketCall::GetChallenge => "GET /v1/challenges/{id}",
            PocketCall::CreateOrder => "POST /v1/orders",
            PocketCall::GetOrder => "GET /v1/orders/{id}",
            PocketCall::PatchOrder => "PATCH /v1/orders/{id}",
            PocketCall::GetExchange => "GET /v1/exchanges/{id}",
            PocketCall::PatchExchangeInvoice => "PATCH /v1/exchanges/{id} (invoice)",
            PocketCall::PatchExchangeChannel => "PATCH /v1/exchanges/{id} (channel)",
        }
    }

    pub fn method(self) -> reqwest::Method {
        match self {
            PocketCall::CreateChallenge | PocketCall::CreateOrder => reqwest::Method::POST,
            PocketCall::GetChallenge | PocketCall::GetOrder | PocketCall::GetExchange => {
                reqwest::Method::GET
            }
            PocketCall::PatchOrder
            | PocketCall::PatchExchangeInvoice
            | PocketCall::PatchExchangeChannel => reqwest::Method::PATCH,
        }
    }

    /// Whether the call changes something at Pocket (only then is a lost answer "unknown").
    pub fn effect(self) -> outcome::Call {
        if self.method() == reqwest::Method::GET {
            outcome::Call::Read
        } else {
            outcome::Call::Write
        }
    }

    fn resource(self) -> &'static str {
        match self {
            PocketCall::CreateChallenge | PocketCall::GetChallenge => "challenge",
            PocketCall::CreateOrder | PocketCall::GetOrder | PocketCall::PatchOrder => "order",
            PocketCall::GetExchange
            | PocketCall::PatchExchangeInvoice
            | PocketCall::PatchExchangeChannel => "exchange",
        }
    }
}

impl std::fmt::Display for PocketCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a call failed, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The request could not be made: a base URL that cannot carry a path, an id that is not
    /// one (`..`), a redirect loop.
    Invalid,
    /// Nothing reached Pocket: connection refused, DNS, TLS handshake, a connect timeout.
    NotSent,
    /// The request was sent, or may have been, and no whole answer came back: a timeout after
    /// connecting, a connection cut before or during the answer.
    NoAnswer,
    /// An error status, with the documented code of its body (top level or nested) and the
    /// `Retry-After` it carried.
    Status {
        status: u16,
        code: Option<ApiCode>,
        retry_after: Option<Duration>,
    },
    /// A 2xx answer whose body is not the documented resource.
    Malformed,
}

/// What satflow does about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Worth another try later; not before `retry_after` when Pocket said so.
    Transient { retry_after: Option<Duration> },
    /// Fails the same way every time: the reason says what the user has to change.
    Permanent(&'static str),
    /// The call may have taken effect: read Pocket's state before any retry.
    Unknown,
    /// A payout that is under way or was made: the payout is done.
    Done,
    /// Pocket will not open a channel: pay by invoice instead.
    FallBackToInvoice,
}

impl Verdict {
    pub const TRANSIENT: Verdict = Verdict::Transient { retry_after: None };

    /// The class the outbox acts on; `None` for the reactions the caller handles itself.
    pub fn class(self) -> Option<Class> {
        match self {
            Verdict::Transient { retry_after } => Some(Class::Transient { retry_after }),
            Verdict::Permanent(_) => Some(Class::Permanent),
            Verdict::Unknown => Some(Class::Unknown),
            Verdict::Done | Verdict::FallBackToInvoice => None,
        }
    }
}

impl From<Class> for Verdict {
    fn from(class: Class) -> Self {
        match class {
            Class::Transient { retry_after } => Verdict::Transient { retry_after },
            Class::Permanent => Verdict::Permanent("Pocket refused the request"),
            Class::Unknown => Verdict::Unknown,
        }
    }
}

const NEEDS_YOU: &str = "this needs you: check the node and the order";

/// The table: what a failure of `call` means. The only place this is decided.
pub fn outcome(call: PocketCall, failure: &Failure) -> Verdict {
    use PocketCall::*;
    match failure {
        Failure::Invalid => Verdict::Permanent(
            "the request cannot be made as configured: check pocket.base_url and the id",
        ),
        Failure::NotSent => Verdict::TRANSIENT,
        Failure::NoAnswer => match call {
            // A challenge is single use and expires unused within a day: asking for another
            // one is harmless even if the first was made.
            CreateChallenge => Verdict::TRANSIENT,
            // There is no endpoint listing orders, so only the user can tell whether one was
            // made; `order setup` says so rather than making a second.
            CreateOrder => Verdict::Unknown,
            // Reconciled by the outbox: an order patch sets the same values again, a payout
            // is read back (`GET /v1/exchanges/{id}`) before anything is sent again.
            _ => match call.effect() {
                outcome::Call::Read => Verdict::TRANSIENT,
                outcome::Call::Write => Verdict::Unknown,
            },
        },
        Failure::Malformed => match call {
            // 2xx: Pocket took the payout; satflow needs nothing from the answer.
            PatchExchangeInvoice | PatchExchangeChannel => Verdict::Done,
            CreateOrder => Verdict::Unknown,
            PatchOrder => Verdict::Permanent(
                "Pocket applied the change but its answer is not in the documented shape: satflow may need an update",
            ),
            _ => Verdict::Permanent(
                "Pocket's answer is not in the documented shape: satflow may need an update",
            ),
        },
        Failure::Status {
            status,
            code,
            retry_after,
        } => {
            // The status first: 408, 425, 429 and 5xx are transient whatever the body says.
            if let Some(class) = outcome::of_status(*status, *retry_after) {
                return class.into();
            }
            if let Some(verdict) = documented(call, code.as_ref()) {
                return verdict;
            }
            match status {
                401 => Verdict::Permanent(
                    "Pocket did not accept the client id: check pocket.client_id",
                ),
                403 => Verdict::Permanent("Pocket does not allow this to the client id"),
                404 => match call.resource() {
                    "challenge" => Verdict::Permanent("Pocket has no such challenge"),
                    "order" => Verdict::Permanent("Pocket has no such order"),
                    _ => Verdict::Permanent("Pocket has no such exchange"),
                },
                _ if matches!(call, PatchExchangeInvoice | PatchExchangeChannel) => {
                    Verdict::Permanent(NEEDS_YOU)
                }
                400..=499 => Verdict::Permanent("Pocket refused the request: its message says why"),
                _ => Verdict::Permanent("an answer Pocket does not document"),
            }
        }
    }
}

/// The reactions to the codes Pocket documents for `PATCH /v1/exchanges/{id}`; `None` where
/// the status decides.
fn documented(call: PocketCall, code: Option<&ApiCode>) -> Option<Verdict> {
    use ApiCode::*;
    let code = code?;
    let verdict = match (call, code) {
        (
            PocketCall::PatchExchangeInvoice | PocketCall::PatchExchangeChannel,
            InProgress | AlreadyCompleted,
        ) => Verdict::Done,
        (PocketCall::PatchExchangeInvoice, InvoiceExpired | InvoiceAmount) => {
            // The next attempt asks the node for a fresh invoice.
            Verdict::TRANSIENT
        }
        (PocketCall::PatchExchangeInvoice, InvoiceNetwork) => Verdict::Permanent(
            "the node's invoice is for another network than Pocket pays on: check the node",
        ),
        (PocketCall::PatchExchangeInvoice, InvalidInvoice) => {
            Verdict::Permanent("Pocket could not read the node's invoice: check the node")
        }
        (PocketCall::PatchExchangeInvoice, UnexpectedNodePubkey) => Verdict::Permanent(
            "the invoice is from another node than the order's node_pubkey: check lightning.<node> and the order",
        ),
        (PocketCall::PatchExchangeChannel, ChannelPayoutNotAllowed) => Verdict::FallBackToInvoice,
        // Pocket could not reach the node to open the channel: it may be back later.
        (PocketCall::PatchExchangeInvoice | PocketCall::PatchExchangeChannel, Connect) => {
            Verdict::TRANSIENT
        }
        (PocketCall::PatchExchangeChannel, NodeAddressRequired) => Verdict::Permanent(
            "Pocket cannot resolve the node's address: set lightning.<node>.node_address to PUBKEY@HOST:PORT",
        ),
        (PocketCall::PatchExchangeChannel, UnexpectedNodePubkey) => Verdict::Permanent(
            "node_address names another node than the order's node_pubkey: check lightning.<node>.node_address",
        ),
        (PocketCall::PatchExchangeInvoice | PocketCall::PatchExchangeChannel, _) => {
            Verdict::Permanent(NEEDS_YOU)
        }
        _ => return None,
    };
    Some(verdict)
}

/// How a step that reads Pocket retries within its run: a few attempts, short delays, a
/// `Retry-After` honoured up to a cap (a longer wait fails the step now, with the reason), and
/// a budget of time: no attempt starts that could end after it, so a slow Pocket holds a run
/// for about `budget` at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    pub attempts: u32,
    pub first_delay: Duration,
    /// The longest `Retry-After` waited for inside a run.
    pub retry_after_cap: Duration,
    pub budget: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Patience {
            attempts: 4,
            first_delay: Duration::from_millis(500),
            retry_after_cap: Duration::from_secs(10),
            budget: Duration::from_secs(30),
        }
    }
}

impl Patience {
    /// The wait before attempt `attempt + 1` (attempts count from 1), `elapsed` into the read,
    /// when an attempt may take up to `call_timeout`; `None` when the read should stop: the
    /// verdict is not transient, no attempt or time is left, or Pocket asked for a longer wait
    /// than the cap.
    pub fn next_wait(
        &self,
        attempt: u32,
        verdict: Verdict,
        elapsed: Duration,
        call_timeout: Duration,
    ) -> Option<Duration> {
        let Verdict::Transient { retry_after } = verdict else {
            return None;
        };
        if attempt >= self.attempts {
            return None;
        }
        let backoff = self
            .first_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let wait = match retry_after {
            Some(asked) if asked > self.retry_after_cap => return None,
            Some(asked) => backoff.max(asked),
            None => backoff,
        };
        (elapsed + wait + call_timeout <= self.budget).then_some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(call: PocketCall, code: ApiCode) -> Verdict {
        outcome(
            call,
            &Failure::Status {
                status: 400,
                code: Some(code),
                retry_after: None,
            },
        )
    }

    #[test]
    fn every_documented_answer_to_an_invoice_payout_has_its_reaction() {
        use ApiCode::*;
        for (code, done, transient) in [
            (InProgress, true, false),
            (AlreadyCompleted, true, false),
            (InvoiceExpired, false, true),
            (InvoiceAmount, false, true),
            (Connect, false, true),
            (UnexpectedNodePubkey, false, false),
            (InvoiceNetwork, false, false),
            (InvalidInvoice, false, false),
            (ChannelPayoutNotAllowed, false, false),
            (NodeAddressRequired, false, false),
            (Other("new".into()), false, false),
        ] {
            let verdict = refused(PocketCall::PatchExchangeInvoice, code.clone());
            assert_eq!(verdict == Verdict::Done, done, "{code:?}: {verdict:?}");
            assert_eq!(
                verdict == Verdict::TRANSIENT,
                transient,
                "{code:?}: {verdict:?}"
            );
            if !done && !transient {
                assert!(
                    matches!(verdict, Verdict::Permanent(_)),
                    "{code:?}: {verdict:?}"
                );
            }
        }
    }

    #[test]
    fn done_means_done_on_the_channel_branch_too() {
        for code in [ApiCode::InProgress, ApiCode::AlreadyCompleted] {
            assert_eq!(
                refused(PocketCall::PatchExchangeChannel, code),
                Verdict::Done
            );
        }
        assert_eq!(
            refused(
                PocketCall::PatchExchangeChannel,
                ApiCode::ChannelPayoutNotAllowed
            ),
            Verdict::FallBackToInvoice
        );
    }

    #[test]
    fn the_status_decides_before_the_body() {
        let asked = Some(Duration::from_secs(6));
        for call in PocketCall::ALL {
            for status in [408, 425, 429, 500, 503] {
                let failure = Failure::Status {
                    status,
                    code: Some(ApiCode::Other("service_unavailable".into())),
                    retry_after: asked,
                };
                assert_eq!(
                    outcome(call, &failure),
                    Verdict::Transient { retry_after: asked },
                    "{call} {status}"
                );
            }
            // Even a code that would mean "done" waits for a 5xx to pass.
            let failure = Failure::Status {
                status: 503,
                code: Some(ApiCode::AlreadyCompleted),
                retry_after: None,
            };
            assert_eq!(outcome(call, &failure), Verdict::TRANSIENT, "{call}");
        }
    }

    #[test]
    fn reads_retry_a_lost_answer_writes_reconcile_it() {
        use PocketCall::*;
        for call in [GetChallenge, GetOrder, GetExchange, CreateChallenge] {
            assert_eq!(
                outcome(call, &Failure::NoAnswer),
                Verdict::TRANSIENT,
                "{call}"
            );
        }
        for call in [
            CreateOrder,
            PatchOrder,
            PatchExchangeInvoice,
            PatchExchangeChannel,
        ] {
            assert_eq!(
                outcome(call, &Failure::NoAnswer),
                Verdict::Unknown,
                "{call}"
            );
        }
    }

    #[test]
    fn patience_is_bounded_and_honours_retry_after_up_to_its_cap() {
        let p = Patience::default();
        let (zero, call) = (Duration::ZERO, Duration::from_secs(10));
        assert_eq!(
            p.next_wait(1, Verdict::TRANSIENT, zero, call),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            p.next_wait(3, Verdict::TRANSIENT, zero, call),
            Some(Duration::from_secs(2))
        );
        assert_eq!(p.next_wait(4, Verdict::TRANSIENT, zero, call), None);
        let asked = |s| Verdict::Transient {
            retry_after: Some(Duration::from_secs(s)),
        };
        assert_eq!(
            p.next_wait(1, asked(3), zero, call),
            Some(Duration::from_secs(3))
        );
        assert_eq!(p.next_wait(1, asked(60), zero, call), None);
        assert_eq!(p.next_wait(1, Verdict::Permanent("no"), zero, call), None);
        assert_eq!(p.next_wait(1, Verdict::Unknown, zero, call), None);
        // Two timeouts of 10 s use most of the budget: no third attempt starts.
        assert_eq!(
            p.next_wait(1, Verdict::TRANSIENT, Duration::from_secs(10), call),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            p.next_wait(2, Verdict::TRANSIENT, Duration::from_millis(20_500), call),
            None
        );
    }
}
