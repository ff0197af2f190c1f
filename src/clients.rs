//! The clients of the outside world that the daemon builds once, at start, per configured name:
//! one shared HTTP client, the Pocket client, and each Lightning node (its macaroon and TLS
//! certificate read here, once, so that no async handler reads a file).
//!
//! Built by the engine's context (`engine::context`) and handed to the handlers. It must never
//! do I/O after `build`, and never hold a secret anywhere but inside the clients themselves.

use std::collections::BTreeMap;

use std::time::Duration;

use crate::config::{Config, WithdrawProvider};
use crate::lightning::node::{Node, NodeError};
use crate::pocket::PocketClient;

/// The connect timeout of the shared client (webhooks and other plain HTTP posts).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Clients {
    /// The plain HTTP client (no pinned certificate), shared by every call that needs no
    /// settings of its own; a reqwest client is a handle onto one connection pool.
    pub http: reqwest::Client,
    pub pocket: Option<PocketClient>,
    /// Each `lightning.NAME`, or why it could not be built (a macaroon that cannot be read),
    /// which the step or handler that needs it reports as it would have at the time.
    nodes: BTreeMap<String, Result<Node, String>>,
    /// Each `lightning.NAME` that a `withdraw.*` of kind `lnd` sends from, built with the
    /// withdrawal's own timeouts (inside the outbox lease), or the error that building it gave.
    withdraw_nodes: BTreeMap<String, Result<Node, NodeError>>,
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
            withdraw_nodes: BTreeMap::new(),
        }
    }

    /// With the nodes the `lnd` withdrawals send from, built with `(connect, total)` (the
    /// withdrawal's timeouts, which the caller knows). Reads their macaroons and certificates.
    pub fn with_withdraw_nodes(
        mut self,
        config: &Config,
        timeouts: (Duration, Duration),
    ) -> Clients {
        let (connect, total) = timeouts;
        for provider in config.withdraw.values() {
            if let WithdrawProvider::Lnd { node } = provider
                && let Some(settings) = config.lightning.get(node)
                && !self.withdraw_nodes.contains_key(node)
            {
                let built = Node::from_config_with(settings, connect, total);
                self.withdraw_nodes.insert(node.clone(), built);
            }
        }
        self
    }

    /// No clients at all (tests of the dispatcher, tools that call no provider).
    pub fn none() -> Clients {
        Clients {
            http: shared_http(),
            pocket: None,
            nodes: BTreeMap::new(),
            withdraw_nodes: BTreeMap::new(),
        }
    }

    /// The node `lightning.NAME`, built at start. `None` when the configuration had no such
    /// node then; `Some(Err)` says why it could not be built.
    pub fn node(&self, name: &str) -> Option<Result<&Node, &str>> {
        self.nodes
            .get(name)
            .map(|built| built.as_ref().map_err(String::as_str))
    }

    /// The node `lightning.NAME` as an `lnd` withdrawal sends from it, built at start. `None`
    /// when no withdrawal named it then; `Some(Err)` is the error building it gave.
    pub fn withdraw_node(&self, name: &str) -> Option<Result<&Node, &NodeError>> {
        self.withdraw_nodes.get(name).map(Result::as_ref)
    }
}

fn shared_http() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("satflow/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .expect("the HTTP client's settings are valid")
}
