//! The daemon's context, built once at start (the way Zero To Production's `Application::build`
//! does): the configuration, the store, the clock, the clients of the outside world (one HTTP
//! client, Pocket, each Lightning node with its macaroon and certificate read here), the mailer
//! and the alerts, and what the workflows' payout wallets are watched through.
//!
//! Everything the runner, the dispatcher and the exchange processor share comes from here, so a
//! file is read and a connection pool made once per daemon, not once per step. Building it must
//! never call a provider: a daemon starts while Pocket or a node is down.

use std::collections::HashMap;
use std::sync::Arc;

use crate::clients::Clients;
use crate::clock::Clock;
use crate::config::Config;
use crate::notify::email::{Alerts, Mailer};
use crate::store::Store;
use crate::wallet::chain::ChainSource;
use crate::workflow::Workflow;

pub struct Context {
    pub config: Arc<Config>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub clients: Arc<Clients>,
    pub env: minijinja::Environment<'static>,
    pub mailer: Option<Mailer>,
    pub alerts: Alerts,
    /// How long a claimed run or outbox item stays this daemon's without renewal.
    pub lease: chrono::Duration,
    /// The wallet each workflow's `pocket.order` pays out to.
    pub payout_wallets: HashMap<String, String>,
    /// The chain source of each of those workflows whose wallet has one.
    pub explorers: HashMap<String, ChainSource>,
}

impl Context {
    pub fn build(
        config: Arc<Config>,
        workflows: &[Arc<Workflow>],
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Context {
        let lease = chrono::Duration::from_std(config.engine.lease)
            .unwrap_or(chrono::Duration::seconds(30));
        let mailer = config
            .email
            .as_ref()
            .map(|e| Mailer::new(e, config.templates.clone()).with_clock(Arc::clone(&clock)));
        let clients = Arc::new(
            Clients::build(&config)
                .with_withdraw_nodes(&config, crate::withdraw::call_timeouts(&config)),
        );
        let channels = config
            .notify
            .iter()
            .map(|(name, target)| (name.clone(), target.kind()))
            .collect();
        let pinger = config.healthcheck.clone().map(|url| {
            Arc::new(crate::notify::channels::healthcheck::Pinger::new(
                url,
                clients.http.clone(),
            ))
        });
        let alerts = Alerts::routed(
            mailer.clone(),
            config.alert_routes.clone(),
            channels,
            config.templates.clone(),
        )
        .with_healthcheck(pinger);
        let payout_wallets = payout_wallets(workflows);
        let explorers = explorers(&config, &payout_wallets);
        Context {
            clients,
            env: crate::expr::environment(),
            mailer,
            alerts,
            lease,
            payout_wallets,
            explorers,
            config,
            store,
            clock,
        }
    }
}

/// The chain source of each workflow whose order pays out to a wallet with an `esplora_url`
/// or an `electrum_url`.
pub fn explorers(
    config: &Config,
    payout_wallets: &HashMap<String, String>,
) -> HashMap<String, ChainSource> {
    payout_wallets
        .iter()
        .filter_map(|(workflow, wallet)| {
            let source = ChainSource::of(config.wallets.get(wallet)?)?;
            Some((workflow.clone(), source))
        })
        .collect()
}

/// The wallet each workflow's `pocket.order` pays out to.
pub fn payout_wallets(workflows: &[Arc<Workflow>]) -> HashMap<String, String> {
    workflows
        .iter()
        .filter_map(|w| {
            let wallet = w.steps.iter().find_map(|s| match &s.action {
                crate::workflow::Action::PocketOrder(o) => match &o.payout {
                    crate::workflow::actions::Payout::Wallet { wallet, .. } => Some(wallet.clone()),
                    _ => None,
                },
                _ => None,
            })?;
            Some((w.name.clone(), wallet))
        })
        .collect()
}
