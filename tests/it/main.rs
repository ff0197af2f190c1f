//! Integration tests: the real `satflow` binary run against files on disk, as a user would.
//! One test crate with modules, so the suite links a single binary.

mod check;
mod cli_hygiene;
mod clients;
mod cln_tls;
mod cluster;
mod dashboard;
mod db_copy;
mod demo;
mod electrum;
mod engine;
mod esplora;
mod expect;
mod exports;
mod helpers;
mod http_limits;
mod init;
mod lifecycle;
mod lightning;
mod lnnode;
mod notify_channels;
mod order_setup;
mod outcomes_nodes;
mod outcomes_pocket;
mod plan;
mod pocket;
mod reload;
mod report;
mod robustness;
mod sink;
mod smtp;
mod systemd;
mod treasury;
mod wallets;
mod webhooks;
mod withdrawals;
