//! fargate-connect's Slack side: the ingress over HTTP or Socket Mode (signature check, command
//! grammar), the notifier that renders worker notices for Slack, and the process that runs them
//! with the worker. It never calls AWS itself (but for `doctor`'s read-only probes and the
//! request form's container list); it meets the worker in the ledger.

pub mod app;
pub mod audit_cli;
pub mod command;
pub mod config;
pub mod connect;
pub mod doctor;
pub mod gate;
pub mod home;
pub mod interactions;
pub mod modal;
pub mod notifier;
pub mod policy;
pub mod render;
pub mod replay;
pub mod routes;
pub mod server;
pub mod signature;
pub mod slack;
pub mod socket;
pub mod tell;
pub mod views;

/// Installs rustls' aws-lc-rs provider once, before any TLS client is built.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
