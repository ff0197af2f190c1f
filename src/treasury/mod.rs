//! Treasury controls: the audit log's entries and its verification, budgets that pause an
//! order, and approvals that hold a step until enough people said yes.
//!
//! These modules decide; they never call the outside world themselves (an email or a patch is
//! an outbox item) and never write SQL (that is `store::audit` / `store::approvals`).

pub mod approvals;
pub mod audit;
pub mod limits;
