//! fargate-connect's worker: everything but Slack. The ledger (SQLite), the request state
//! machine, the AWS adapters and the loops that provision, expire and tear down bastions.
//! The bot crate depends on this one, never the other way round.

pub mod audit;
pub mod audit_line;
pub mod aws;
pub mod config;
pub mod duration;
pub mod events;
pub mod ids;
pub mod ledger;
pub mod metrics;
pub mod provision;
pub mod reaper;
pub mod runner;
pub mod state;
pub mod tag_watch;
pub mod workflow;
