//! Emails and the other notification channels (ntfy, Telegram, Standard Webhooks): the built-in
//! alert and report templates, the user's own templates, the routing of alerts, and the
//! healthcheck ping.
//!
//! Nothing here sends mail directly from a step or a handler's caller: every email leaves
//! through the outbox so that it is sent once, retried, and never lost.

pub mod channels;
pub mod email;
pub mod mime;
pub mod templates;
