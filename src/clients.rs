//! The clients of the outside world that the daemon builds once, at start, per configured name:
//! one shared HTTP client, the Pocket client, and each Lightning node (its macaroon and TLS
//! certificate read here, once, so that no async handler reads a file).
//!
//! Built by the engine's context (`engine::context`) and handed to the handlers. It must never
//! do I/O after `build`, and never hold a secret anywhere but inside the clients themselves.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::lightning::node::{Node, NodeError};
use crate::pocket::PocketClient;

/// The connect timeout of the shared client (webhooks and other plain HTTP posts).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Clients {
    /// The plain HTTP client (no pinned certificate), shared by every call that needs no
    /// settings of its own; a reqwest client is a handle onto one connection pool.
    pub http: reqwest::Client,
    pub pocket: Option<PocketClient>,
    /// Each `lightning.NAME`, or why it could not be built (a macaroon that cannot be read),
    /// which the step or handler that needs it reports as it would have at the time.
    nodes: BTreeMap<String, Result<Node, String>>,
}

impl Clients {
    /// Every client the configuration names. Reads the nodes' macaroons and certificates.
    pub fn build(config: &Config) -> Clients {
        Clients {
            http: shared_http(),
            pocket: config.pocket.as_ref().map(PocketClient::new),
            nodes: config
                .lightning
                .iter()
                .map(|(name, node)| {
                    let built = Node::from_config(node).map_err(|e: NodeError| e.to_string());
                    (name.clone(), built)
                })
                .collect(),
        }
    }

    /// No clients at all (tests of the dispatcher, tools that call no provider).
    pub fn none() -> Clients {
        Clients {
            http: shared_http(),
            pocket: None,
            nodes: BTreeMap::new(),
        }
    }

    /// The node `lightning.NAME`, built at start. `None` when the configuration had no such
    /// node then; `Some(Err)` says why it could not be built.
    pub fn node(&self, name: &str) -> Option<Result<&Node, &str>> {
        self.nodes
            .get(name)
            .map(|built| built.as_ref().map_err(String::as_str))
    }
}

fn shared_http() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("satflow/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .expect("the HTTP client's settings are valid")
}
