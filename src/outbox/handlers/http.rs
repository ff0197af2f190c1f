//! The `http` kind: its effect, payload and POST live with the `http.post` action
//! (`crate::actions::http_post`); this name stays for the commands that show items.

pub use crate::actions::http_post::{HttpEffect, HttpPayload, KIND, item, post, shown_url};
