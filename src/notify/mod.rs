//! Emails: the built-in alert and report templates, the user's own templates, and (with the
//! webhooks issue) sending through the outbox.
//!
//! Nothing here sends mail directly from a step or a handler's caller: every email leaves
//! through the outbox so that it is sent once, retried, and never lost.

pub mod email;
pub mod mime;
pub mod templates;
