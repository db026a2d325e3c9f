//! Palisade's domain types and, behind the `db` feature, its data layer over SQLite or
//! PostgreSQL (chosen at run time by the database URL).

pub mod model;
pub mod protection;

#[cfg(feature = "db")]
pub mod accounts;
#[cfg(feature = "db")]
pub mod agent_reports;
#[cfg(feature = "db")]
pub mod agents;
#[cfg(feature = "db")]
pub mod apis;
#[cfg(feature = "db")]
pub mod audit;
#[cfg(feature = "db")]
pub mod audit_sinks;
#[cfg(feature = "db")]
pub mod bundles;
#[cfg(feature = "db")]
pub mod checkpoints;
#[cfg(feature = "db")]
pub mod client_apps;
#[cfg(feature = "db")]
pub mod custom_classes;
#[cfg(feature = "db")]
pub mod data_classes;
#[cfg(feature = "db")]
mod db;
#[cfg(feature = "db")]
pub mod demo;
#[cfg(feature = "db")]
mod error;
#[cfg(feature = "db")]
pub mod findings;
#[cfg(feature = "db")]
pub mod login_throttle;
#[cfg(feature = "db")]
pub mod mfa;
#[cfg(feature = "db")]
pub mod openapi;
#[cfg(feature = "db")]
pub mod passwords;
#[cfg(feature = "db")]
pub mod sessions;
#[cfg(feature = "db")]
pub mod settings;
#[cfg(feature = "db")]
pub mod sign_in_policy;
#[cfg(feature = "db")]
pub mod signing;
pub mod sso;
#[cfg(feature = "db")]
pub mod sso_identities;
#[cfg(feature = "db")]
pub mod sso_providers;
#[cfg(feature = "db")]
pub mod teams;
#[cfg(feature = "db")]
mod text;
#[cfg(feature = "db")]
pub mod tokens;

#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "db")]
pub use db::{Backend, Db, now_millis};
#[cfg(feature = "db")]
pub use error::StoreError;
pub use model::*;
pub use protection::Protection;
